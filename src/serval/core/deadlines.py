"""A request's schedule policy: its deadline and its priority.

Adapters translate what their protocol says (Triton's ``schedule_policy`` request parameters
``timeout`` and ``priority``, in ``protocols/oip``; a gRPC deadline) into
``InferenceRequest.deadline`` and ``InferenceRequest.priority``; the data plane answers a
request at its deadline, and servables drop a request whose deadline passed before it ran.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

from serval.core.errors import DeadlineExceededError
from serval.core.types import InferenceRequest, InferenceResponse


class _Predicts(Protocol):
    """What a deadline is applied to: any servable (``core.servable`` imports this module,
    so it is named here, not imported: no cycle)."""

    async def predict(self, request: InferenceRequest) -> InferenceResponse: ...


def raise_if_expired(request: InferenceRequest) -> None:
    """Raise ``DeadlineExceededError`` if ``request``'s deadline has passed."""
    deadline = request.deadline
    if deadline is not None and time.monotonic() >= deadline:
        raise expired_error(request)


def expired_error(request: InferenceRequest) -> DeadlineExceededError:
    return DeadlineExceededError(
        f"the deadline of the request to model {request.model_name!r} passed before the model "
        f"ran it"
    )


async def predict_by_deadline(servable: _Predicts, request: InferenceRequest) -> InferenceResponse:
    """``servable.predict(request)``, answered ``DeadlineExceededError`` at the request's
    deadline if it has not finished by then (a batch already running is not stopped)."""
    if request.deadline is None:
        return await servable.predict(request)
    remaining = request.deadline - time.monotonic()
    if remaining <= 0:
        raise expired_error(request)
    try:
        async with asyncio.timeout(remaining) as scope:
            return await servable.predict(request)
    except TimeoutError:
        if scope.expired():
            raise DeadlineExceededError(
                f"model {request.model_name!r} did not answer within the request's deadline "
                f"({remaining * 1e3:.3f} ms)"
            ) from None
        raise
