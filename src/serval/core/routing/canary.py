"""A canary ramp: a new version gets ``steps[0]`` percent of the traffic, then each next step
after ``step_s`` while its guardrails hold; after the last step it is promoted (all traffic).

The ramp clock is the wall clock (``time.time()``) from when the policy was set, so replicas
that got the policy together ramp together with no shared state. The rest of the traffic goes
to the stable version: the highest available version other than the canary. Guardrails are
evaluated over the current step from the canary version's request records, once
``min_requests`` arrived; a breach rolls back at once (``CanaryRamp.observe``).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from typing import Literal

from serval.core.errors import ErrorCode, ServalError
from serval.core.lifecycle.snapshot import VersionSnapshot
from serval.core.records import RequestRecord
from serval.core.routing.policy import LATEST, Choice
from serval.core.routing.weighted import StickyKey, rendezvous, route_salt
from serval.core.specs.traffic import CanarySpec
from serval.core.types import InferenceRequest

CanaryState = Literal["ramping", "promoted", "rolled_back"]
_LATENCY_SAMPLES = 10_000  # latencies kept per step for the p99 a breach reports
# Failures that are the server's (the canary's) doing; client mistakes (4xx) are not.
_SERVER_ERROR_CODES = frozenset({ErrorCode.INTERNAL, ErrorCode.UNAVAILABLE})


def is_server_error(error: BaseException | None) -> bool:
    """Whether a request failed by the server's fault: a model that raised or could not
    answer. Client mistakes, a client's own deadline and a client that left are not."""
    if error is None:
        return False
    if isinstance(error, ServalError):
        return error.code in _SERVER_ERROR_CODES
    return isinstance(error, Exception)  # CancelledError: the client left


class CanaryRamp:
    """The ``canary`` policy and its state (``state``, ``reason``)."""

    __slots__ = (
        "_canary_salt",
        "_errors",
        "_latencies",
        "_requests",
        "_slow",
        "_stable_cache",
        "_stable_salt",
        "_step",
        "clock",
        "reason",
        "spec",
        "started_at",
        "state",
        "sticky",
        "version",
    )

    def __init__(
        self,
        spec: CanarySpec,
        sticky: StickyKey | None = None,
        *,
        started_at: float | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.spec = spec
        self.version = spec.version_number
        self._canary_salt = route_salt(self.version)
        self.sticky = sticky
        self.clock = clock
        self.started_at = clock() if started_at is None else started_at
        self.state: CanaryState = "ramping"
        self.reason = ""
        self._stable_cache: tuple[tuple[int, ...] | None, int | None] = (None, None)
        self._stable_salt = 0  # route_salt of the cached stable version
        self._step = -1  # the step the guardrail counters are of
        self._requests = self._errors = self._slow = 0
        self._latencies: list[float] = []

    # -- the ramp --------------------------------------------------------------------------

    def step_at(self, now: float) -> int:
        """The step the ramp is in at ``now``; ``len(steps)`` once it is past the last."""
        return max(0, int((now - self.started_at) // self.spec.step_s))

    def percent(self, now: float | None = None) -> float:
        """The canary's share of traffic now, in percent (promoting it past the last step)."""
        if self.state == "rolled_back":
            return 0.0
        if self.state == "promoted":
            return 100.0
        step = self.step_at(self.clock() if now is None else now)
        if step >= len(self.spec.steps):
            self.state = "promoted"
            return 100.0
        return self.spec.steps[step]

    def stable(self, available: tuple[int, ...]) -> int | None:
        """The highest available version other than the canary (None: there is none)."""
        seen, stable = self._stable_cache
        if available is not seen:
            others = [v for v in available if v != self.version]
            stable = others[-1] if others else None
            self._stable_cache = (available, stable)
            self._stable_salt = route_salt(stable) if stable is not None else 0
        return stable

    def choose(self, request: InferenceRequest, snapshot: VersionSnapshot) -> Choice:
        available = snapshot.versions
        stable = self.stable(available)
        canary_up = self.version in available
        if stable is None or not canary_up:
            # One side is missing: the other answers (or the latest, or why none can).
            version = self.version if canary_up else stable
            return LATEST.choose(request, snapshot) if version is None else Choice.of(version)
        percent = self.percent()
        if percent >= 100.0:
            return Choice.of(self.version)
        if percent <= 0.0:
            return Choice.of(stable)
        seed = None if self.sticky is None else self.sticky.seed(snapshot.name, request)
        if seed is None:
            to_canary = random.random() * 100.0 < percent
            return Choice.of(self.version if to_canary else stable)
        canary = (self.version, percent, self._canary_salt)
        routes = (canary, (stable, 100.0 - percent, self._stable_salt))
        return Choice.of(rendezvous(seed, routes))

    # -- the guardrails --------------------------------------------------------------------

    def observe(self, record: RequestRecord) -> str | None:
        """Account a request the canary version answered; returns the reason when this
        request breached a guardrail (the ramp has then rolled back), else None."""
        if self.state != "ramping":
            return None
        step = self.step_at(self.clock())
        if step >= len(self.spec.steps):
            self.state = "promoted"
            return None
        if step != self._step:  # a new step: its guardrails start over
            self._step = step
            self._requests = self._errors = self._slow = 0
            self._latencies = []
        guardrails = self.spec.guardrails
        self._requests += 1
        if is_server_error(record.error):
            self._errors += 1
        if record.finished_ns and record.started_ns:
            latency_ms = (record.finished_ns - record.started_ns) / 1e6
            if guardrails.max_p99_ms is not None and latency_ms > guardrails.max_p99_ms:
                self._slow += 1
            self._keep_latency(latency_ms)
        requests = self._requests
        if requests < guardrails.min_requests:
            return None
        reason = None
        error_rate = self._errors / requests
        if guardrails.max_error_rate is not None and error_rate > guardrails.max_error_rate:
            reason = (
                f"guardrail max_error_rate: error rate {error_rate:.4g} over {requests} requests "
                f"in step {step + 1} (limit {guardrails.max_error_rate:g})"
            )
        # p99 (nearest rank) > limit exactly when more than n - ceil(0.99 n) requests were
        # slower than the limit: a count per request, no sort until a breach.
        elif guardrails.max_p99_ms is not None and self._slow > requests - math.ceil(
            0.99 * requests
        ):
            reason = (
                f"guardrail max_p99_ms: p99 latency {self.p99_ms():.1f} ms over {requests} "
                f"requests in step {step + 1} (limit {guardrails.max_p99_ms:g} ms)"
            )
        if reason is not None:
            self.roll_back(reason)
        return reason

    def _keep_latency(self, latency_ms: float) -> None:
        latencies = self._latencies
        if len(latencies) < _LATENCY_SAMPLES:
            latencies.append(latency_ms)
        else:  # reservoir sampling: a uniform sample of the step's latencies
            slot = random.randrange(self._requests)
            if slot < _LATENCY_SAMPLES:
                latencies[slot] = latency_ms

    def p99_ms(self) -> float:
        """The 99th percentile (nearest rank) of the current step's latencies sampled."""
        ordered = sorted(self._latencies)
        if not ordered:
            return 0.0
        return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]

    def roll_back(self, reason: str) -> None:
        """All traffic to the stable version from now on."""
        self.state = "rolled_back"
        self.reason = reason
