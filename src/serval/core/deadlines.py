"""A request's schedule policy: its deadline and its priority.

Adapters translate what their protocol says (Triton's ``schedule_policy`` request parameters
``timeout`` and ``priority``, a gRPC deadline) into ``InferenceRequest.deadline`` and
``InferenceRequest.priority``; the data plane answers a request at its deadline, and servables
drop a request whose deadline passed before it ran.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from serval.core.errors import DeadlineExceededError, InvalidInputError
from serval.core.types import InferenceRequest, InferenceResponse, Parameters

if TYPE_CHECKING:  # servable.py imports this module
    from serval.core.servable import Servable

TIMEOUT_PARAMETER = "timeout"  # microseconds; 0 or absent: no deadline
PRIORITY_PARAMETER = "priority"  # 1 is the highest; 0 or absent: the model's default


def apply_schedule_parameters(request: InferenceRequest, *, now: float | None = None) -> None:
    """Set ``request.deadline`` and ``request.priority`` from its ``timeout`` and ``priority``
    parameters (Triton's schedule_policy extension). ``now`` is ``time.monotonic()`` when the
    request arrived; a deadline already set (e.g. a gRPC deadline) is kept if it is earlier."""
    parameters = request.parameters
    if not parameters:
        return
    timeout_us = _non_negative_int(parameters, TIMEOUT_PARAMETER, "microseconds")
    if timeout_us:
        start = time.monotonic() if now is None else now
        tighten_deadline(request, start + timeout_us / 1e6)
    priority = _non_negative_int(parameters, PRIORITY_PARAMETER, "level; 1 is the highest")
    if priority is not None:
        request.priority = priority


def tighten_deadline(request: InferenceRequest, deadline: float) -> None:
    """Give ``request`` the earlier of its deadline and ``deadline``."""
    if request.deadline is None or deadline < request.deadline:
        request.deadline = deadline


def _non_negative_int(parameters: Parameters, key: str, unit: str) -> int | None:
    value = parameters.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidInputError(
            f"parameter {key!r} must be a non-negative integer ({unit}), received {value!r}"
        )
    return value


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


async def predict_by_deadline(servable: Servable, request: InferenceRequest) -> InferenceResponse:
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
