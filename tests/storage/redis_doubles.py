"""Network doubles for the Redis connection tests: a server that accepts and never answers,
and a TCP forwarder to the machine's real Redis that can be started and stopped on a port
(a Redis that goes away and comes back)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379


@contextlib.asynccontextmanager
async def silent_server(port: int = 0) -> AsyncIterator[int]:
    """A port that accepts connections and never sends a byte."""
    held: list[asyncio.StreamWriter] = []

    async def accept(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", port)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for writer in held:
            writer.close()
        await server.wait_closed()


class Forwarder:
    """Forwards connections on ``port`` to the real Redis while started."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._forward, "127.0.0.1", self.port)

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(REDIS_HOST, REDIS_PORT)
        self._writers += [writer, up_writer]

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            sink.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async def stop(self) -> None:
        """Stop listening and cut every forwarded connection (Redis "restarted")."""
        if self._server is not None:
            self._server.close()
            for writer in self._writers:
                writer.close()
            self._writers.clear()
            await self._server.wait_closed()
            self._server = None
