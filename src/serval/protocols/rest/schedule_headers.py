"""Triton's schedule policy as HTTP headers: ``timeout`` (microseconds) and ``priority``.

The same keys as the V2 request parameters, for clients that cannot change the body (a V1
request has no parameters at all; a proxy can add a header). When both are given, the earlier
deadline wins and the parameter's priority wins (a header gives the priority when the
parameters gave none, or 0: the model's default).
"""

from __future__ import annotations

import time

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
            request.tighten_deadline(start + timeout_us / 1e6)
    if priority is not None:
        level = _non_negative_int(priority, PRIORITY_HEADER, "level; 1 is the highest")
        if not request.priority:  # the parameter, applied while decoding, wins
            request.priority = level


def _non_negative_int(value: str, header: str, unit: str) -> int:
    value = value.strip()
    if not (value.isascii() and value.isdigit()):  # int() refuses '²' (latin-1 b'\xb2')
        raise InvalidInputError(
            f"header {header!r} must be a non-negative integer ({unit}), received {value!r}"
        )
    return int(value)
