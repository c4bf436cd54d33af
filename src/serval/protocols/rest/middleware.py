"""The ASGI layer around the Starlette application: a request id for every HTTP request,
echoed in ``x-request-id``, and the access log.

It wraps the whole Starlette application, so error responses, 500s included, carry the id.
The inference route does the same itself (``v2_infer``), without this layer's cost.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serval.observability.logging import begin_request, log_access
from serval.protocols.rest.errors import shutdown_error

_HEADER = b"x-request-id"


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp, *, access_log: bool = False) -> None:
        self._app = app
        self._access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        given = None
        for key, value in scope["headers"]:
            if key == _HEADER:
                given = value.decode("latin-1")
                break
        context = begin_request(given)
        status = 0  # none sent yet

        def send_with_id(message: Message) -> Awaitable[None]:
            # Not a coroutine of its own: it hands back send's awaitable (one frame less
            # for each message of each request).
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                header = (_HEADER, context.header_value())
                message["headers"] = [*message.get("headers", ()), header]
            return send(message)

        started = time.perf_counter_ns()
        try:
            await self._app(scope, receive, send_with_id)
        except asyncio.CancelledError:
            # Cut off at shutdown: a JSON 503 if nothing was sent; either way the task ends
            # here, so the server does not answer a plain-text 500 or reset the connection.
            # (Errors are answered inside the app, by ``errors.UnexpectedErrors``.)
            if not status:
                await shutdown_error()(scope, receive, send_with_id)
        finally:
            if self._access_log:
                log_request(scope, status or 500, time.perf_counter_ns() - started)


def log_request(scope: Scope, status: int, duration_ns: int) -> None:
    """One access log line for the HTTP request of ``scope``."""
    client = scope.get("client")
    raw_path = scope.get("raw_path")  # as sent: a %0A stays three characters in the log
    path = raw_path.decode("latin-1") if raw_path is not None else scope.get("path", "")
    milliseconds = duration_ns / 1e6
    log_access(
        "%s %s %d %.2f ms",
        scope.get("method", ""),
        path,
        status,
        milliseconds,
        method=scope.get("method", ""),
        path=path,
        status=status,
        duration_ms=round(milliseconds, 3),
        client=f"{client[0]}:{client[1]}" if client else None,
    )
