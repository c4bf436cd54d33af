"""Adaptive batching: the cost model's fit, the policy's decisions, and a model with a known
sleep cost kept under its latency target while offered more load than it can serve."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from dataclasses import dataclass, field

import numpy as np
import pytest

from serval.core.batching.adaptive import AdaptivePolicy, LinearCostModel, start_after
from serval.core.batching.servable import BatchingOptions, BatchingServable
from serval.core.errors import ModelConfigError, OverloadedError
from serval.core.model_spec import ModelSpec
from serval.core.tensors.datatypes import DataType
from serval.core.types import (
    InferenceRequest,
    InferenceResponse,
    ServableMetadata,
    Tensor,
    TensorSpec,
)

FP32 = DataType.FP32
MS = 1e-3


# -- the cost model --------------------------------------------------------------------------


def test_the_fit_recovers_a_linear_cost() -> None:
    model = LinearCostModel()
    for rows in [1, 8, 3, 16, 2, 32, 5] * 5:
        model.observe(rows, 5 * MS + 1 * MS * rows)
    assert model.intercept_s == pytest.approx(5 * MS, abs=1e-9)
    assert model.slope_s == pytest.approx(1 * MS, abs=1e-9)
    assert model.spread_s == pytest.approx(0.0, abs=1e-6)
    assert model.predict(10) == pytest.approx(15 * MS)


def test_one_batch_size_alone_is_read_as_cost_proportional_to_rows() -> None:
    model = LinearCostModel()
    model.observe(1, 6 * MS)
    # Nothing tells the fixed cost from the cost per row yet: the cautious guess, no gain
    # from batching.
    assert model.intercept_s == 0.0
    assert model.slope_s == pytest.approx(6 * MS)
    model.observe(4, 9 * MS)
    assert model.intercept_s == pytest.approx(5 * MS)
    assert model.slope_s == pytest.approx(1 * MS)


def test_sizes_that_stop_varying_keep_the_slope_and_follow_the_level() -> None:
    model = LinearCostModel(decay=0.9)
    for rows in [1, 10, 20, 5] * 10:
        model.observe(rows, 5 * MS + 1 * MS * rows)
    for _ in range(300):  # every batch now has 10 rows, and costs 5 ms more
        model.observe(10, 20 * MS)
    # The slope moves a little while the old sizes fade, then stays; the level follows.
    assert model.slope_s == pytest.approx(1 * MS, rel=0.1)
    assert model.predict(10) == pytest.approx(20 * MS, rel=1e-6)


def test_old_observations_fade() -> None:
    model = LinearCostModel(decay=0.9)
    sizes = [1, 4, 16, 8, 2, 32]
    for rows in sizes * 10:
        model.observe(rows, 5 * MS + 1 * MS * rows)
    for rows in sizes * 20:  # the model became slower
        model.observe(rows, 10 * MS + 2 * MS * rows)
    assert model.intercept_s == pytest.approx(10 * MS, rel=1e-3)
    assert model.slope_s == pytest.approx(2 * MS, rel=1e-3)


def test_noise_gives_a_spread_and_never_a_negative_cost() -> None:
    rng = random.Random(7)
    model = LinearCostModel(decay=0.99)
    for _ in range(2000):
        rows = rng.randint(1, 32)
        model.observe(rows, 5 * MS + 1 * MS * rows + rng.gauss(0, 1 * MS))
    assert model.intercept_s == pytest.approx(5 * MS, abs=1 * MS)
    assert model.slope_s == pytest.approx(1 * MS, abs=0.1 * MS)
    assert model.spread_s == pytest.approx(1 * MS, rel=0.2)

    flat = LinearCostModel()
    for rows, seconds in [(1, 9 * MS), (8, 8 * MS), (16, 7 * MS)]:  # slower when smaller
        flat.observe(rows, seconds)
    assert flat.slope_s == 0.0
    assert flat.intercept_s == pytest.approx(8 * MS, rel=0.01)


def test_decay_is_checked() -> None:
    with pytest.raises(ValueError, match="decay"):
        LinearCostModel(decay=1.0)


# -- the policy ------------------------------------------------------------------------------


def learned(slo_ms: float, max_batch_size: int = 64, instances: int = 1) -> AdaptivePolicy:
    """A policy that has seen batches cost 5 ms + 1 ms per row."""
    model = LinearCostModel()
    for rows in (1, 4, 9, 16, 32):
        model.observe(rows, 5 * MS + 1 * MS * rows)
    policy = AdaptivePolicy(slo_ms * MS, max_batch_size, instances, cost_model=model)
    return policy


def test_the_batch_limit_keeps_two_batches_within_the_target() -> None:
    assert AdaptivePolicy(0.06, 64).batch_limit == 64  # nothing learned yet
    assert learned(60).batch_limit == 25  # 5 ms + 25 ms = 30 ms, half the target
    assert learned(60, max_batch_size=16).batch_limit == 16
    assert learned(8).batch_limit == 1  # even one row misses half the target


def test_start_after_shares_batches_among_instances() -> None:
    assert start_after([0.0], 0, 0.01) == 0.0
    assert start_after([0.004], 2, 0.01) == pytest.approx(0.024)
    assert start_after([0.0, 0.004], 1, 0.01) == pytest.approx(0.004)
    assert start_after([0.0, 0.004], 3, 0.01) == pytest.approx(0.014)


def test_a_request_that_would_miss_the_target_is_refused() -> None:
    policy = learned(60)  # limit 25 rows, 30 ms a full batch
    now = 100.0
    running = policy.started(25, now)
    # 5 ms into the running batch, with 20 rows ahead, the request runs in the next batch,
    # which may fill up: 25 + 30 ms.
    assert policy.predicted_latency(1, 20, now + 0.005) == pytest.approx(55 * MS)
    policy.admit("m", 1, 20, now + 0.005)
    # 30 rows ahead: it runs in the second batch after the running one.
    assert policy.predicted_latency(1, 30, now + 0.005) == pytest.approx(85 * MS)
    with pytest.raises(OverloadedError, match="latency_slo_ms 60") as refused:
        policy.admit("m", 1, 30, now + 0.005)
    assert refused.value.retry_after_s == pytest.approx(25 * MS)
    policy.finished(running, 0.03)
    assert policy.cost_model.observations == 6
    # Nothing runs: the request's batch starts at once, with what waits now.
    assert policy.predicted_latency(1, 9, now + 0.03) == pytest.approx(15 * MS)


def test_an_idle_model_always_accepts_and_an_unknown_cost_accepts_what_runs_at_once() -> None:
    slow = learned(5)  # one row costs 6 ms, over the whole target
    slow.admit("m", 1, 0, 1.0)

    fresh = AdaptivePolicy(0.05, 8, instances=2)
    fresh.admit("m", 1, 0, 1.0)
    first = fresh.started(1, 1.0)
    fresh.admit("m", 8, 0, 1.0)  # the other instance is free
    second = fresh.started(8, 1.0)
    with pytest.raises(OverloadedError, match="unknown time") as refused:
        fresh.admit("m", 1, 0, 1.0)
    assert refused.value.retry_after_s == 1.0
    fresh.finished(first, None)  # a failed batch teaches nothing
    assert fresh.cost_model.observations == 0
    fresh.finished(second, 0.02)
    assert fresh.cost_model.observations == 1


def test_a_batch_waits_for_more_only_when_more_is_expected_in_time() -> None:
    policy = learned(60)
    assert policy.wait_s(2, 0.0) == 0.0  # no arrivals seen yet
    for i in range(20):
        policy.admit("m", 1, 0, 10.0 + i * 0.001)  # a request every millisecond
    # The oldest may start until 30 ms - cost(3 rows) = 22 ms after it came.
    assert policy.wait_s(2, 0.005) == pytest.approx(17 * MS)
    assert policy.wait_s(2, 0.0215) == 0.0  # less than a gap left
    assert policy.wait_s(25, 0.0) == 0.0  # full

    sparse = learned(60)
    for i in range(20):
        sparse.admit("m", 1, 0, 10.0 + i * 0.05)  # one every 50 ms
    assert sparse.wait_s(2, 0.0) == 0.0


def test_late_answers_tighten_admission_and_timely_ones_relax_it() -> None:
    policy = learned(100)
    policy.answered(10.0, 10.095)  # 95 ms: past 90% of the target
    assert policy.threshold_s == pytest.approx(0.08)
    policy.answered(10.01, 10.2)  # admitted before that cut: no second cut
    assert policy.threshold_s == pytest.approx(0.08)
    policy.answered(10.1, 10.3)  # admitted after it
    assert policy.threshold_s == pytest.approx(0.064)
    for _ in range(100):
        policy.answered(20.0, 20.05)
    assert policy.threshold_s == pytest.approx(0.1)  # back to the target, no further
    # The running batch ends in 30 ms, then a batch of up to 45 rows: 80 ms planned.
    running = policy.started(25, 30.0)
    policy.admit("m", 1, 10, 30.0)
    policy.threshold_s = 0.07
    with pytest.raises(OverloadedError):
        policy.admit("m", 1, 10, 30.0)
    policy.finished(running, 0.03)


# -- model.yaml ------------------------------------------------------------------------------


def test_adaptive_mode_in_model_yaml() -> None:
    spec = ModelSpec.parse(
        {
            "max_batch_size": 32,
            "instances": 2,
            "dynamic_batching": {"mode": "adaptive", "latency_slo_ms": 50, "max_queue_size": 9},
        },
        source="m/model.yaml",
    )
    options = BatchingOptions.from_spec(spec)
    assert options.latency_slo_s == pytest.approx(0.05)
    assert options.max_queue_size == 9
    assert BatchingOptions.from_spec(ModelSpec(max_batch_size=4)).latency_slo_s == 0.0


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"max_batch_size": 4, "dynamic_batching": {"mode": "adaptive"}}, "needs latency_slo_ms"),
        (
            {"max_batch_size": 4, "dynamic_batching": {"latency_slo_ms": 10}},
            "latency_slo_ms needs mode: adaptive",
        ),
        (
            {"dynamic_batching": {"mode": "adaptive", "latency_slo_ms": 10}},
            "adaptive needs max_batch_size > 0",
        ),
        (
            {
                "max_batch_size": 4,
                "dynamic_batching": {
                    "mode": "adaptive",
                    "latency_slo_ms": 10,
                    "max_queue_delay_us": 100,
                },
            },
            "remove max_queue_delay_us",
        ),
        (
            {"max_batch_size": 4, "dynamic_batching": {"mode": "adaptive", "latency_slo_ms": 0}},
            "latency_slo_ms",
        ),
        ({"max_batch_size": 4, "dynamic_batching": {"mode": "auto"}}, "'fixed' or 'adaptive'"),
    ],
)
def test_adaptive_spec_errors_name_the_key(doc: dict[str, object], message: str) -> None:
    with pytest.raises(ModelConfigError, match=message):
        ModelSpec.parse(doc, source="m/model.yaml")


# -- a model with a known cost, overloaded ----------------------------------------------------


@dataclass
class SleepingPredictor:
    """y = x, after sleeping 5 ms + 1 ms per row; records each batch's rows."""

    fixed_s: float = 5 * MS
    per_row_s: float = 1 * MS
    batches: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def metadata(self) -> ServableMetadata:
        spec = TensorSpec("x", FP32, (-1, 1))
        return ServableMetadata("fake", (spec,), (TensorSpec("y", FP32, (-1, 1)),))

    def predict(self, request: InferenceRequest) -> InferenceResponse:
        x = request.inputs[0].data
        with self.lock:
            self.batches.append(x.shape[0])
        time.sleep(self.fixed_s + self.per_row_s * x.shape[0])
        return InferenceResponse(request.model_name, [Tensor("y", FP32, x.copy())])

    def close(self) -> None:
        pass


SLO_S = 0.1  # batches of up to 45 rows (50 ms): about 900 rows/s per instance
OFFERED_PER_S = 2000  # requests of one row
DURATION_S = 1.0
# The largest batch whose cost, 5 ms + 1 ms per row, fits in half the target. time.sleep never
# returns early, so a busy machine can only make the learned cost larger and the limit smaller.
LIMIT_ROWS = 45


@pytest.mark.parametrize("instances", [1, 2])
def test_adaptive_mode_sheds_load_it_cannot_serve_in_time(instances: int) -> None:
    # What is deterministic about an overload; the latencies it gives are measured by
    # bench/adaptive_overload.py, not asserted here (a shared machine pauses the process).
    fake = SleepingPredictor()
    options = BatchingOptions(max_batch_size=64, instances=instances, latency_slo_s=SLO_S)
    batching = BatchingServable(fake, options)
    latencies: list[float] = []
    answered: list[tuple[float, InferenceResponse]] = []
    refused: list[OverloadedError] = []

    async def one(value: float) -> None:
        x = np.full((1, 1), value, np.float32)
        started = time.perf_counter()
        try:
            response = await batching.predict(InferenceRequest("m", [Tensor("x", FP32, x)]))
        except OverloadedError as exc:
            refused.append(exc)
            return
        latencies.append(time.perf_counter() - started)
        answered.append((value, response))

    async def body() -> int:
        tasks = []
        burst, every_s = 10, 10 / OFFERED_PER_S
        start = time.perf_counter()
        while time.perf_counter() - start < DURATION_S:
            tasks.extend(asyncio.ensure_future(one(float(len(tasks) + i))) for i in range(burst))
            await asyncio.sleep(every_s)
        await asyncio.gather(*tasks)
        await batching.close()
        return len(tasks)

    offered = asyncio.run(body())
    assert len(latencies) + len(refused) == offered  # none lost
    for value, response in answered:  # each gets its own row back
        assert response.outputs[0].data.tolist() == [[value]]
    assert refused, "more load than the model can serve, yet nothing was refused"
    assert all(exc.retry_after_s for exc in refused)
    assert len(latencies) > 0.2 * offered  # it still serves
    # The latency target, not max_batch_size, bounds the batches.
    assert max(fake.batches) <= LIMIT_ROWS
    assert sum(fake.batches) == len(latencies)
