"""Triton's schedule policy as HTTP headers: ``timeout`` (microseconds) and ``priority``.

The same keys as the V2 request parameters, for clients that cannot change the body (a V1
request has no parameters at all; a proxy can add a header). When both are given, the earlier
deadline wins and the parameter's priority wins.
"""

from __future__ import annotations

import time

from serval.core.deadlines import PRIORITY_PARAMETER, tighten_deadline
from serval.core.errors import InvalidInputError
from serval.core.types import InferenceRequest

TIMEOUT_HEADER = "timeout"
PRIORITY_HEADER = "priority"


def apply_schedule_headers(
    request: InferenceRequest,
    timeout: str | None,
    priority: str | None,
    *,
    now: float | None = None,
) -> None:
    """Header values as received (None: absent); ``now`` is ``time.monotonic()`` when the
    request arrived."""
    if timeout is not None:
        timeout_us = _non_negative_int(timeout, TIMEOUT_HEADER, "microseconds")
        if timeout_us:
            start = time.monotonic() if now is None else now
            tighten_deadline(request, start + timeout_us / 1e6)
    if priority is not None:
        level = _non_negative_int(priority, PRIORITY_HEADER, "level; 1 is the highest")
        if PRIORITY_PARAMETER not in request.parameters:
            request.priority = level


def _non_negative_int(value: str, header: str, unit: str) -> int:
    value = value.strip()
    if not (value.isascii() and value.isdigit()):  # int() refuses '²' (latin-1 b'\xb2')
        raise InvalidInputError(
            f"header {header!r} must be a non-negative integer ({unit}), received {value!r}"
        )
    return int(value)
