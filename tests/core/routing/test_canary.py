"""The canary ramp on a clock the test moves: steps, promotion, guardrails and rollback."""

from __future__ import annotations

import hashlib
from types import MappingProxyType

import numpy as np

from serval.core.errors import InvalidInputError, ModelExecutionError
from serval.core.lifecycle.snapshot import VersionSnapshot
from serval.core.lifecycle.states import ServableId
from serval.core.records import RequestRecord
from serval.core.routing.canary import CanaryRamp
from serval.core.routing.weighted import StickyKey
from serval.core.specs.traffic import CanarySpec, GuardrailsSpec, StickySpec
from serval.core.tensors.datatypes import DataType
from serval.core.types import InferenceRequest, Tensor

SNAPSHOT = VersionSnapshot("m", (1, 2, 3), MappingProxyType({}))
REQUEST = InferenceRequest("m", [Tensor("x", DataType.FP32, np.zeros(1, np.float32))])


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def ramp(clock: Clock, **guardrails: float) -> CanaryRamp:
    spec = CanarySpec(
        version="3",
        steps=(10.0, 50.0),
        step_s=60.0,
        guardrails=GuardrailsSpec(min_requests=20, **guardrails),  # type: ignore[arg-type]
    )
    return CanaryRamp(spec, clock=clock)


def record(latency_ms: float = 1.0, error: BaseException | None = None) -> RequestRecord:
    r = RequestRecord("rest_v2", "infer", "m", 1_000_000)
    r.finished_ns = r.started_ns + int(latency_ms * 1e6)
    r.servable = ServableId("m", 3)
    r.error = error
    return r


def share_to_canary(canary: CanaryRamp, n: int = 4000) -> float:
    return sum(canary.choose(REQUEST, SNAPSHOT).primary == 3 for _ in range(n)) / n


def test_the_canary_ramps_step_by_step_then_is_promoted() -> None:
    clock = Clock()
    canary = ramp(clock)
    assert canary.stable(SNAPSHOT.versions) == 2  # the highest other than the canary
    assert canary.percent() == 10.0
    assert 0.06 < share_to_canary(canary) < 0.14
    assert {canary.choose(REQUEST, SNAPSHOT).primary for _ in range(200)} == {2, 3}
    clock.now += 60
    assert canary.percent() == 50.0
    assert 0.44 < share_to_canary(canary) < 0.56
    clock.now += 60
    assert (canary.percent(), canary.state) == (100.0, "promoted")
    assert share_to_canary(canary, 100) == 1.0


def test_an_error_rate_breach_rolls_back_once_min_requests_arrived() -> None:
    clock = Clock()
    canary = ramp(clock, max_error_rate=0.1)
    failure = ModelExecutionError("model 'm' version 3 failed: ValueError: no")
    for _ in range(19):
        assert canary.observe(record(error=failure)) is None  # fewer than min_requests
    reason = canary.observe(record(error=failure))
    assert reason == (
        "guardrail max_error_rate: error rate 1 over 20 requests in step 1 (limit 0.1)"
    )
    assert (canary.state, canary.reason, canary.percent()) == ("rolled_back", reason, 0.0)
    assert share_to_canary(canary, 200) == 0.0


def test_client_mistakes_are_not_the_canary_s_errors() -> None:
    canary = ramp(Clock(), max_error_rate=0.0)
    for _ in range(50):
        assert canary.observe(record(error=InvalidInputError("bad input"))) is None
    assert canary.state == "ramping"


def test_a_p99_breach_names_the_measured_latency() -> None:
    canary = ramp(Clock(), max_p99_ms=100.0)
    reason = None
    for i in range(40):
        reason = canary.observe(record(latency_ms=500.0 if i % 10 == 0 else 5.0)) or reason
    assert reason is not None
    assert reason.startswith("guardrail max_p99_ms: p99 latency 500.0 ms over 20 requests")
    assert canary.state == "rolled_back"


def test_guardrails_count_the_current_step_only() -> None:
    clock = Clock()
    canary = ramp(clock, max_error_rate=0.5)
    failure = ModelExecutionError("failed")
    for _ in range(15):
        canary.observe(record(error=failure))
    clock.now += 60  # a new step: its own counts
    for _ in range(19):
        assert canary.observe(record()) is None
    assert canary.state == "ramping"


def test_without_the_canary_or_a_stable_version_the_other_answers() -> None:
    canary = ramp(Clock())
    only_stable = VersionSnapshot("m", (1, 2), MappingProxyType({}))
    assert {canary.choose(REQUEST, only_stable).primary for _ in range(50)} == {2}
    only_canary = VersionSnapshot("m", (3,), MappingProxyType({}))
    assert {canary.choose(REQUEST, only_canary).primary for _ in range(50)} == {3}


def test_sticky_users_only_move_from_stable_to_canary_as_it_ramps() -> None:
    clock = Clock()
    spec = CanarySpec(version="3", steps=(10.0, 50.0), step_s=60.0)
    canary = CanaryRamp(spec, StickyKey(StickySpec(header="x-user")), clock=clock)
    users = [f"user-{i}" for i in range(2000)]

    def versions() -> dict[str, int]:
        chosen = {}
        for user in users:
            request = InferenceRequest("m", REQUEST.inputs, routing_key=user)
            chosen[user] = canary.choose(request, SNAPSHOT).primary
        return chosen

    first = versions()
    assert first == versions()  # sticky
    clock.now += 60
    second = versions()
    assert all(second[u] == 3 for u in users if first[u] == 3)  # canary users stay
    moved = sum(first[u] != second[u] for u in users)
    assert 0.3 * len(users) < moved < 0.5 * len(users)  # about 40% move, all to the canary


def test_sticky_canary_assignment_is_the_same_in_every_release() -> None:
    # Which users a sticky canary takes at each step is a fixed function of (model, key,
    # percent): digests of 20,000 users' versions at 10% and 50%, as the first release
    # assigned them.
    clock = Clock()
    spec = CanarySpec(version="3", steps=(10.0, 50.0), step_s=60.0)
    canary = CanaryRamp(spec, StickyKey(StickySpec(header="x-user")), clock=clock)
    for digest in ("8874bd5c8c5e0bab1af81bbb4923714e", "06441f05099f9c32e9c1ddf42a2c3966"):
        chosen = "".join(
            str(canary.choose(InferenceRequest("m", [], routing_key=f"user-{i}"), SNAPSHOT).primary)
            for i in range(20_000)
        )
        assert hashlib.sha256(chosen.encode()).hexdigest()[:32] == digest
        clock.now += 60
