"""ServalError -> gRPC status: every RPC handler runs through ``translate_errors``."""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Awaitable, Callable
from typing import NoReturn, TypeVar

import grpc
import grpc.aio

from serval.core.errors import ErrorCode, ServalError
from serval.security.access import client_message

logger = logging.getLogger(__name__)

STATUS_FOR_CODE: dict[ErrorCode, grpc.StatusCode] = {
    ErrorCode.INVALID_ARGUMENT: grpc.StatusCode.INVALID_ARGUMENT,
    ErrorCode.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    ErrorCode.PAYLOAD_TOO_LARGE: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ErrorCode.RESOURCE_EXHAUSTED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ErrorCode.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    ErrorCode.DEADLINE_EXCEEDED: grpc.StatusCode.DEADLINE_EXCEEDED,
    ErrorCode.FAILED_PRECONDITION: grpc.StatusCode.FAILED_PRECONDITION,
    ErrorCode.UNIMPLEMENTED: grpc.StatusCode.UNIMPLEMENTED,
    ErrorCode.INTERNAL: grpc.StatusCode.INTERNAL,
    ErrorCode.UNAUTHENTICATED: grpc.StatusCode.UNAUTHENTICATED,
    ErrorCode.PERMISSION_DENIED: grpc.StatusCode.PERMISSION_DENIED,
}

# Trailing metadata key carrying ServalError.retry_after_s, in whole seconds as HTTP's header.
RETRY_AFTER_KEY = "retry-after"


def status_for(error: ServalError) -> grpc.StatusCode:
    return STATUS_FOR_CODE.get(error.code, grpc.StatusCode.INTERNAL)


async def abort(context: grpc.aio.ServicerContext, error: ServalError) -> NoReturn:
    """End the RPC with the status and message of ``error``."""
    if error.retry_after_s is not None:
        seconds = max(1, math.ceil(error.retry_after_s))
        context.set_trailing_metadata(((RETRY_AFTER_KEY, str(seconds)),))
    await context.abort(status_for(error), client_message(error))
    raise AssertionError("context.abort returned")  # pragma: no cover - abort always raises


S = TypeVar("S")
Req = TypeVar("Req")
Resp = TypeVar("Resp")


def translate_errors(
    handler: Callable[[S, Req, grpc.aio.ServicerContext], Awaitable[Resp]],
) -> Callable[[S, Req, grpc.aio.ServicerContext], Awaitable[Resp]]:
    """Wrap an RPC method ``(self, request, context)``: a ``ServalError`` becomes its status;
    anything else is logged and becomes INTERNAL naming the exception (never UNKNOWN)."""

    @functools.wraps(handler)
    async def wrapper(self: S, request: Req, context: grpc.aio.ServicerContext) -> Resp:
        try:
            return await handler(self, request, context)
        except ServalError as exc:
            error = exc
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            logger.exception("gRPC %s failed", handler.__name__)
            error = ServalError(
                f"internal error in {handler.__name__}: {type(exc).__name__}: {exc}"
            )
        await abort(context, error)

    return wrapper
