"""How metrics and traces name the outcome of an inference request.

Each request ends as one ``RequestRecord`` (core.records) on the event bus; metrics and tracing
subscribe to it (``EventBus.on_request``). Its ``error`` says why it failed; the ``outcome``
label turns that into one of a few words, bounded whatever the client sends.
"""

from __future__ import annotations

import asyncio

from serval.core.errors import ErrorCode, ServalError

SUCCESS = "success"
# Outcomes, the values of the ``outcome`` label: bounded, whatever the client sends.
OUTCOMES: dict[ErrorCode, str] = {
    ErrorCode.INVALID_ARGUMENT: "client_error",
    ErrorCode.FAILED_PRECONDITION: "client_error",
    ErrorCode.PAYLOAD_TOO_LARGE: "client_error",
    ErrorCode.UNIMPLEMENTED: "client_error",
    ErrorCode.NOT_FOUND: "unknown_model",
    ErrorCode.UNAVAILABLE: "unavailable",
    ErrorCode.RESOURCE_EXHAUSTED: "overloaded",
    ErrorCode.DEADLINE_EXCEEDED: "timeout",
    ErrorCode.INTERNAL: "server_error",
    ErrorCode.UNAUTHENTICATED: "client_error",
    ErrorCode.PERMISSION_DENIED: "client_error",
}


def outcome_of(error: BaseException | None) -> str:
    if error is None:
        return SUCCESS
    if isinstance(error, ServalError):
        return OUTCOMES.get(error.code, "server_error")
    if isinstance(error, asyncio.CancelledError):
        return "cancelled"
    return "server_error"
