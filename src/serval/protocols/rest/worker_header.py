"""``Serval-Worker: <pid>`` on every HTTP response, when several worker processes share the
port (``serval serve --workers N``): tells which process answered, since statistics, the
repository index and metrics are per process."""

from __future__ import annotations

import os
from collections.abc import Awaitable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

WORKER_HEADER = b"serval-worker"


class WorkerHeaderMiddleware:
    def __init__(self, app: ASGIApp, worker: str | None = None) -> None:
        """``worker``: the header's value; the process id by default."""
        self._app = app
        self._header = (WORKER_HEADER, (worker or str(os.getpid())).encode("ascii"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        header = self._header

        def send_with_worker(message: Message) -> Awaitable[None]:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), header]
            return send(message)

        await self._app(scope, receive, send_with_worker)
