"""Error codes -> HTTP statuses, and the JSON error body ``{"error": "..."}``."""

from __future__ import annotations

import logging
import math

import orjson
from starlette.responses import Response

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


def error_response(exc: ServalError) -> Response:
    status = HTTP_STATUS.get(exc.code, 500)
    headers = {}
    if status in _RETRY_STATUSES:
        headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after_s or 1)))
    return json_error(status, client_message(exc), headers)


def json_error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps({"error": message}),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


def unexpected_error(exc: Exception) -> Response:
    logger.exception("unexpected error while serving a request", exc_info=exc)
    return json_error(
        500, public_message(f"internal error: {type(exc).__name__}: {exc}", "internal error")
    )
