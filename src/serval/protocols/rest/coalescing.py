"""One socket write per HTTP response.

uvicorn writes a response's status line and headers when the app sends
``http.response.start`` and the body when it sends ``http.response.body``: two ``send``
syscalls and two TCP segments per response, about a sixth of the event loop's time for a
one-row inference (bench/README.md). ``CoalescingHttpToolsProtocol`` hands uvicorn a transport
that holds what is written during one turn of the event loop and writes it at the end of the
turn with one ``writelines`` (uvloop: one ``writev``). Nothing waits longer than the current
turn, so streamed responses and ``100 Continue`` go out as before, and once 64 KiB are held
they go at once.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

_WRITE_NOW_BYTES = 64 * 1024


class _CoalescingTransport:
    """Delegates to ``transport``; writes made in one loop turn leave together."""

    __slots__ = ("_held", "_held_bytes", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: list[bytes | bytearray | memoryview] | None = None
        self._held_bytes = 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        held = self._held
        if held is None:
            self._held = held = [data]
            self._held_bytes = len(data)
            self._loop.call_soon(self._flush)
        else:
            held.append(data)
            self._held_bytes += len(data)
        if self._held_bytes >= _WRITE_NOW_BYTES:
            # Large writes go at once: nothing to gain by holding them, and the transport's
            # flow control (pause_writing) must see them in the turn they were made.
            self._flush()

    def writelines(self, chunks: Any) -> None:
        for data in chunks:
            self.write(data)

    def _flush(self) -> None:
        held = self._held
        if held is not None:
            self._held = None
            if len(held) == 1:
                self._transport.write(held[0])
            else:
                self._transport.writelines(held)

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def close(self) -> None:
        self._flush()  # what was written goes out before the FIN
        self._transport.close()

    def write_eof(self) -> None:
        self._flush()
        self._transport.write_eof()

    def abort(self) -> None:
        self._held = None
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:  # the rest: flow control, extra info
        return getattr(self._transport, name)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol over a ``_CoalescingTransport``."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        coalescing = _CoalescingTransport(cast(asyncio.Transport, transport), self.loop)
        super().connection_made(coalescing)  # type: ignore[arg-type]
