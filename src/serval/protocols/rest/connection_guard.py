"""Limits on HTTP connections, against slow and greedy clients (docs/security.md#limits).

``guarded_protocol(limits)`` is the HTTP protocol class uvicorn runs: the coalescing httptools
protocol plus

- a request head (request line and headers) larger than ``max_header_bytes`` is answered 431
  and the connection closed, before the parser buffers more of it;
- a head not complete ``header_timeout_s`` after its first byte (or after the connection
  opened, for a connection that sends nothing) is answered 408 and the connection closed:
  a client sending its headers a byte at a time (slowloris) cannot hold a connection;
- past ``max_connections`` open connections, a new connection may still ask for health
  (``/v2/health/live``, ``/v2/health/ready``) once, with a short head timeout, and any other
  request is answered 503; past that reserve, a new connection is answered 503 and closed at
  once. So file descriptors stay below the process's limit and probes keep answering.

Idle keep-alive connections are closed by uvicorn's ``timeout_keep_alive``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, ClassVar

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serval.protocols.rest.coalescing import CoalescingHttpToolsProtocol

# The health probes: V2 liveness and readiness, and KServe V1's liveness (GET /).
HEALTH_PATHS = frozenset({"/v2/health/live", "/v2/health/ready", "/"})
_OVERFLOW_HEAD_TIMEOUT_S = 1.0
_REASONS = {
    408: b"Request Timeout",
    431: b"Request Header Fields Too Large",
    503: b"Service Unavailable",
}


@dataclass(frozen=True)
class ConnectionLimits:
    max_header_bytes: int
    header_timeout_s: float
    max_connections: int

    @property
    def overflow_reserve(self) -> int:
        """Connections past ``max_connections`` still let in for health probes."""
        return max(8, self.max_connections // 16)


def guarded_protocol(limits: ConnectionLimits) -> type[GuardedHttpToolsProtocol]:
    return type("GuardedHttpToolsProtocol", (GuardedHttpToolsProtocol,), {"limits": limits})


def _raw_response(status: int, message: str, extra: bytes = b"") -> bytes:
    body = orjson.dumps({"error": message})
    return b"".join(
        (
            b"HTTP/1.1 %d %s\r\n" % (status, _REASONS[status]),
            b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(body),
            extra,
            b"connection: close\r\n\r\n",
            body,
        )
    )


class GuardedHttpToolsProtocol(CoalescingHttpToolsProtocol):
    # Slots, not instance attributes: uvicorn's protocol holds 27 already, and past 30 the
    # instance dict stops sharing its keys, which slows every attribute read a little.
    __slots__ = ("_head_bytes", "_head_timeout_s", "_head_timer")
    limits: ClassVar[ConnectionLimits]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_bytes = 0  # bytes of a request head not yet complete
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_timeout_s = self.limits.header_timeout_s

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        open_now, limits = len(self.connections), self.limits
        if open_now > limits.max_connections:
            if open_now > limits.max_connections + limits.overflow_reserve:
                self._reply_and_close(
                    503, "too many connections; retry later", b"retry-after: 1\r\n"
                )
                return
            self.app = _HealthOnly(self.app)
            self._head_timeout_s = min(self._head_timeout_s, _OVERFLOW_HEAD_TIMEOUT_S)
        self._start_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        # uvicorn makes a new cycle for each complete request head: no parser callback needs
        # overriding, and a head that arrives in one chunk (the common case) costs two
        # comparisons here.
        cycle = self.cycle
        in_body = cycle is not None and cycle.more_body
        super().data_received(data)
        if self.cycle is not cycle:  # a head completed
            if self._head_timer is not None:
                self._stop_head_timer()
            self._head_bytes = 0
            return
        if in_body:  # bounded by max_request_bytes and uvicorn's flow control
            return
        self._head_bytes += len(data)
        if self._head_bytes > self.limits.max_header_bytes:
            self._reply_and_close(
                431, f"the request's headers exceed {self.limits.max_header_bytes} bytes"
            )
        elif self._head_timer is None:
            self._start_head_timer()

    def _start_head_timer(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self._head_timeout_s, self._head_timed_out)

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if cycle is not None and (cycle.more_body or not cycle.response_complete):
            return  # a request is being read or answered; uvicorn's keep-alive follows it
        self._reply_and_close(408, "the request's headers did not arrive in time")

    def _reply_and_close(self, status: int, message: str, extra: bytes = b"") -> None:
        self._stop_head_timer()
        self.transport.write(_raw_response(status, message, extra))
        self.transport.close()


class _HealthOnly:
    """The application as a connection over the limit sees it: health, then close."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] in HEALTH_PATHS:

            def send_and_close(message: Message) -> Awaitable[None]:
                if message["type"] == "http.response.start":
                    message["headers"] = [*message.get("headers", ()), (b"connection", b"close")]
                return send(message)

            await self._app(scope, receive, send_and_close)
            return
        body = orjson.dumps({"error": "too many connections; retry later"})
        await send(
            {
                "type": "http.response.start",
                "status": 503,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", b"%d" % len(body)),
                    (b"retry-after", b"1"),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
