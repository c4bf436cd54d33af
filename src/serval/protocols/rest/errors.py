"""Error codes -> HTTP statuses, the JSON error body ``{"error": "..."}``, and the layer that
turns an unexpected exception into one logged 500."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable

import orjson
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serval.core.errors import ErrorCode, ServalError
from serval.security.access import client_message, public_message

logger = logging.getLogger(__name__)

HTTP_STATUS: dict[ErrorCode, int] = {
    ErrorCode.INVALID_ARGUMENT: 400,
    ErrorCode.FAILED_PRECONDITION: 400,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.PAYLOAD_TOO_LARGE: 413,
    ErrorCode.RESOURCE_EXHAUSTED: 429,
    ErrorCode.INTERNAL: 500,
    ErrorCode.UNIMPLEMENTED: 501,
    ErrorCode.UNAVAILABLE: 503,
    ErrorCode.DEADLINE_EXCEEDED: 504,
    ErrorCode.UNAUTHENTICATED: 401,
    ErrorCode.PERMISSION_DENIED: 403,
}

# Statuses that tell a client to come back later get a Retry-After header.
_RETRY_STATUSES = {429, 503}
# The version that answered an inference request (or failed it, once one was chosen).
MODEL_VERSION_HEADER = "x-model-version"


def error_response(exc: ServalError) -> Response:
    """The JSON error for ``exc``; with ``x-model-version`` when a version was chosen and
    the error happened on it (the data plane names it on the error)."""
    status = HTTP_STATUS.get(exc.code, 500)
    headers = {}
    if status in _RETRY_STATUSES:
        headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after_s or 1)))
    if exc.servable is not None:
        headers[MODEL_VERSION_HEADER] = str(exc.servable.version)
    return json_error(status, client_message(exc), headers)


def json_error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps({"error": message}),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


def unexpected_error(exc: BaseException) -> Response:
    logger.error("unexpected error while serving a request", exc_info=exc)
    return json_error(
        500, public_message(f"internal error: {type(exc).__name__}: {exc}", "internal error")
    )


class UnexpectedErrors:
    """Answers an exception no handler took with a JSON 500 and logs it once; also a
    ``SystemExit`` or ``KeyboardInterrupt`` a route let escape (the server keeps running).

    It sits inside Starlette's ``ServerErrorMiddleware``, which would answer too but then
    re-raise, so that uvicorn logged the same traceback a second time and reset the
    keep-alive connection. Cancellation (shutdown) passes through: ``RequestIdMiddleware``
    answers it with a 503.
    """

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        started = False

        def send_tracked(message: Message) -> Awaitable[None]:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            return send(message)

        try:
            await self._app(scope, receive, send_tracked)
        except (asyncio.CancelledError, GeneratorExit):
            raise
        except BaseException as exc:
            if started:  # too late for an error response: let the server close the connection
                raise
            await unexpected_error(exc)(scope, receive, send)


def shutdown_error() -> Response:
    """For a request cut off because the server stops (its exit timeout ran out)."""
    return json_error(
        503,
        "the server is shutting down and stopped this request; retry on another replica",
        {"Retry-After": "1", "Connection": "close"},
    )
