"""Per-token request rate limits: a token bucket for each token (``--auth-rate-limit``)."""

from __future__ import annotations

import time
from collections.abc import Callable


class RateLimiter:
    """Lets each key make ``rate`` requests a second on average, and up to ``burst`` at once.

    Runs on the event loop only (no lock): each call is a few float operations.
    """

    def __init__(
        self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError(f"rate must be positive and burst at least 1: {rate}, {burst}")
        self._rate = rate
        self._burst = burst
        self._clock = clock
        # key -> (tokens left, when they were counted)
        self._buckets: dict[int, tuple[float, float]] = {}

    def wait_s(self, key: int) -> float:
        """0 when ``key`` may make a request now (and counts it); else the seconds until it may."""
        now = self._clock()
        tokens, then = self._buckets.get(key, (self._burst, now))
        tokens = min(self._burst, tokens + (now - then) * self._rate)
        if tokens >= 1:
            self._buckets[key] = (tokens - 1, now)
            return 0.0
        self._buckets[key] = (tokens, now)
        return (1 - tokens) / self._rate
