"""The prediction cache layer: hits skip the model, the key covers what changes the answer,
identical misses run once, a store that is down is a miss, and statistics count it all."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from serval.core.composition.cache import CachingServable
from serval.core.composition.cache_keys import cache_key
from serval.core.composition.layer_counters import LayerCounters
from serval.core.errors import ModelConfigError, ModelExecutionError
from serval.core.servable import ThreadPoolServable
from serval.core.statistics import VersionStatistics
from serval.core.tensors.datatypes import DataType
from serval.core.timings import CACHE_HIT, CACHE_MISS
from serval.core.types import InferenceRequest, RequestedOutput, ServableId, Tensor
from serval.testing import EchoPredictor
from tests.core.fakes import wait_until
from tests.core.lookup_fakes import FakePredictionCache

M1 = ServableId("m", 1)


def request(values: list[float], **parameters: object) -> InferenceRequest:
    x = Tensor("x", DataType.FP32, np.asarray(values, np.float32))
    return InferenceRequest("m", [x], parameters=dict(parameters))  # type: ignore[arg-type]


class Setup:
    def __init__(self, *, inputs: list[str] | None = None) -> None:
        self.pool = ThreadPoolExecutor(4)
        self.predictor = EchoPredictor()
        self.store = FakePredictionCache()
        self.counters = LayerCounters()
        self.servable = CachingServable(
            ThreadPoolServable(self.predictor, self.pool), self.store, M1, self.counters, inputs
        )

    def count(self, outcome: str) -> int:
        return self.counters.get("cache", "m", "1", outcome)


@pytest.fixture
def setup() -> Setup:
    return Setup()


def test_a_repeated_request_is_answered_from_the_cache_without_running_the_model(
    setup: Setup,
) -> None:
    async def body() -> None:
        first = await setup.servable.predict(request([1.0, 2.0]))
        second = await setup.servable.predict(request([1.0, 2.0]))
        assert setup.predictor.calls == 1
        np.testing.assert_array_equal(second.outputs[0].data, [1.0, 2.0])
        assert first.timings.cache == CACHE_MISS
        assert second.timings.cache == CACHE_HIT
        assert second.timings.executions == 0
        assert second is not first and second.outputs is not first.outputs
        assert (setup.count("hit"), setup.count("miss")) == (1, 1)

    asyncio.run(body())


def test_the_key_covers_values_shapes_datatypes_outputs_and_parameters() -> None:
    base = request([1.0, 2.0])
    key = cache_key(base)
    assert cache_key(request([1.0, 2.0])) == key
    assert cache_key(request([1.0, 3.0])) != key
    reshaped = Tensor("x", DataType.FP32, np.asarray([[1.0, 2.0]], np.float32))
    assert cache_key(InferenceRequest("m", [reshaped])) != key
    as_double = Tensor("x", DataType.FP64, np.asarray([1.0, 2.0]))
    assert cache_key(InferenceRequest("m", [as_double])) != key
    assert cache_key(request([1.0, 2.0], signature="other")) != key
    assert cache_key(request([1.0, 2.0], top_k=1)) != cache_key(request([1.0, 2.0], top_k=True))
    asked = request([1.0, 2.0])
    asked.outputs = [RequestedOutput("y")]
    assert cache_key(asked) != key
    # BYTES: element boundaries count.
    ab_c = Tensor("s", DataType.BYTES, np.array([b"ab", b"c"], dtype=object))
    a_bc = Tensor("s", DataType.BYTES, np.array([b"a", b"bc"], dtype=object))
    assert cache_key(InferenceRequest("m", [ab_c])) != cache_key(InferenceRequest("m", [a_bc]))


def test_the_order_inputs_are_listed_in_does_not_split_entries() -> None:
    x = Tensor("x", DataType.FP32, np.ones(2, np.float32))
    z = Tensor("z", DataType.INT64, np.arange(2))
    assert cache_key(InferenceRequest("m", [x, z])) == cache_key(InferenceRequest("m", [z, x]))
    # cache.inputs: only the named inputs count.
    other_z = Tensor("z", DataType.INT64, np.arange(2) + 5)
    assert cache_key(InferenceRequest("m", [x, z]), {"x"}) == cache_key(
        InferenceRequest("m", [x, other_z]), {"x"}
    )


def test_cache_false_skips_the_cache_both_ways(setup: Setup) -> None:
    async def body() -> None:
        skip = request([5.0])
        skip.cache = False
        await setup.servable.predict(skip)
        assert setup.store.gets == 0 and setup.store.puts == 0
        await setup.servable.predict(request([5.0]))
        await setup.servable.predict(skip)
        assert setup.predictor.calls == 3
        assert setup.count("skipped") == 2

    asyncio.run(body())


def test_concurrent_identical_misses_run_the_model_once(setup: Setup) -> None:
    gate = threading.Event()
    setup.predictor.gate = gate

    async def body() -> None:
        calls = [asyncio.create_task(setup.servable.predict(request([7.0]))) for _ in range(8)]
        other = asyncio.create_task(setup.servable.predict(request([8.0])))
        # The leader of [7] and the call of [8] run; the other seven wait on the leader.
        await wait_until(lambda: setup.predictor.calls >= 2)
        gate.set()
        answers = await asyncio.gather(*calls, other)
        assert setup.predictor.calls == 2
        for answer in answers[:8]:
            np.testing.assert_array_equal(answer.outputs[0].data, [7.0])
        assert len({id(answer) for answer in answers}) == 9  # each its own response
        assert setup.count("miss") == 2 and setup.count("hit") == 7

    asyncio.run(body())


def test_a_failing_leader_leaves_each_waiter_to_run_its_own_request(setup: Setup) -> None:
    gate = threading.Event()
    setup.predictor.gate = gate
    setup.predictor.fail_with = RuntimeError("boom")

    async def body() -> None:
        calls = [asyncio.create_task(setup.servable.predict(request([1.0]))) for _ in range(3)]
        await wait_until(lambda: setup.predictor.calls >= 1)
        gate.set()
        results = await asyncio.gather(*calls, return_exceptions=True)
        assert all(isinstance(r, RuntimeError | ModelExecutionError) for r in results)
        assert setup.predictor.calls == 3  # none shared the leader's failure
        assert setup.store.entries == {}  # and nothing was stored

    asyncio.run(body())


def test_a_store_that_does_not_answer_is_a_miss_and_counted(setup: Setup) -> None:
    setup.store.down = True

    async def body() -> None:
        for _ in range(2):
            answer = await setup.servable.predict(request([3.0]))
            np.testing.assert_array_equal(answer.outputs[0].data, [3.0])
        assert setup.predictor.calls == 2
        assert setup.count("unavailable") == 2
        setup.store.down = False  # back: the next answers come from it again
        await setup.servable.predict(request([3.0]))
        await setup.servable.predict(request([3.0]))
        assert setup.predictor.calls == 3

    asyncio.run(body())


def test_cache_inputs_must_name_inputs_of_the_model() -> None:
    with pytest.raises(ModelConfigError, match=r"cache\.inputs: 'nope' is not an input"):
        Setup(inputs=["nope"])


def test_closing_the_layer_closes_the_store(setup: Setup) -> None:
    asyncio.run(setup.servable.close())
    assert setup.store.closed and setup.predictor.closed


def test_statistics_count_hits_and_misses_as_triton_does(setup: Setup) -> None:
    stats = VersionStatistics("m", 1)

    async def body() -> None:
        for _ in range(3):
            response = await setup.servable.predict(request([2.0]))
            stats.record_success(1000, response.timings, 1)

    asyncio.run(body())
    assert (stats.cache_hit.count, stats.cache_miss.count) == (2, 1)
    assert stats.success.count == 3 and stats.inference_count == 3
    assert stats.execution_count == 1  # hits ran nothing
    assert stats.compute_infer.count == 1  # nor were they computed
