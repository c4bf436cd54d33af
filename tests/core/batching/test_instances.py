"""Instances: one batch executed (merged, run once, split), the pool's accounting of busy
instances, and each request answered with its rows and its timings."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field

import numpy as np
import pytest

from serval.core.batching.instances import InstancePool, Outcome, answer, execute
from serval.core.batching.request_queue import Waiting
from serval.core.errors import ModelExecutionError
from serval.core.tensors.datatypes import DataType
from serval.core.types import (
    InferenceRequest,
    InferenceResponse,
    InferenceTimings,
    ServableMetadata,
    Tensor,
    TensorSpec,
)

FP32 = DataType.FP32


@dataclass
class Doubling:
    """y = 2x; records the requests it ran and the threads it ran on; can be held by a gate."""

    gate: threading.Event | None = None
    calls: list[InferenceRequest] = field(default_factory=list)
    threads: set[str] = field(default_factory=set)
    closed: bool = False

    metadata = ServableMetadata(
        "fake", (TensorSpec("x", FP32, (-1, 1)),), (TensorSpec("y", FP32, (-1, 1)),)
    )

    def predict(self, request: InferenceRequest) -> InferenceResponse:
        self.calls.append(request)
        self.threads.add(threading.current_thread().name)
        if self.gate is not None:
            self.gate.wait(10)
        x = request.inputs[0].data
        timings = InferenceTimings(compute_input_ns=1, compute_infer_ns=2, compute_output_ns=3)
        return InferenceResponse(
            "m", [Tensor("y", FP32, x * 2)], model_version="1", timings=timings
        )

    def close(self) -> None:
        self.closed = True


def req(*values: float) -> InferenceRequest:
    data = np.array(values, np.float32).reshape(-1, 1)
    return InferenceRequest("m", [Tensor("x", FP32, data)])


def test_a_lone_request_runs_as_it_is() -> None:
    fake = Doubling()
    alone = req(1.0, 2.0)
    outcome = execute(fake, [alone], [2])
    assert fake.calls == [alone]  # not merged: the same object
    assert outcome.merge_ns == outcome.split_ns == 0
    assert outcome.parts == [outcome.response.outputs]


def test_several_requests_run_once_merged_and_are_split_back() -> None:
    fake = Doubling()
    outcome = execute(fake, [req(1.0), req(2.0, 3.0), req(4.0)], [1, 2, 1])
    assert len(fake.calls) == 1
    assert fake.calls[0].inputs[0].data.ravel().tolist() == [1, 2, 3, 4]
    assert [p[0].data.ravel().tolist() for p in outcome.parts] == [[2], [4, 6], [8]]
    assert outcome.merge_ns >= 0 and outcome.split_ns >= 0


def test_a_model_error_propagates_from_execute() -> None:
    class Failing(Doubling):
        def predict(self, request: InferenceRequest) -> InferenceResponse:
            raise ZeroDivisionError("boom")

    with pytest.raises(ZeroDivisionError):
        execute(Failing(), [req(1.0), req(2.0)], [1, 1])


def test_outputs_that_lose_rows_fail_the_batch() -> None:
    class OneRow(Doubling):
        def predict(self, request: InferenceRequest) -> InferenceResponse:
            return InferenceResponse("m", [Tensor("y", FP32, np.zeros((1, 1), np.float32))])

    with pytest.raises(ModelExecutionError, match="first dimension must be 2"):
        execute(OneRow(), [req(1.0), req(2.0)], [1, 1])


def waiting(loop: asyncio.AbstractEventLoop, rows: int, enqueued_ns: int) -> Waiting:
    future: asyncio.Future[InferenceResponse] = loop.create_future()
    return Waiting(req(*([0.0] * rows)), future, rows, "k", enqueued_ns)


def test_answer_gives_each_request_its_rows_and_timings() -> None:
    loop = asyncio.new_event_loop()
    try:
        batch = [waiting(loop, 1, 100), waiting(loop, 2, 200), waiting(loop, 1, 300)]
        outcome = execute(Doubling(), [item.request for item in batch], [1, 2, 1])
        outcome = Outcome(1000, outcome.response, outcome.parts, merge_ns=10, split_ns=20)
        batch[2].future.cancel()  # its caller gave up: it is skipped
        answer(batch, outcome, batched=True)
        first, second = (item.future.result() for item in batch[:2])
    finally:
        loop.close()
    assert [first.outputs[0].data.shape, second.outputs[0].data.shape] == [(1, 1), (2, 1)]
    assert first.model_version == "1" and first.model_name == "m"
    assert (first.timings.queue_ns, second.timings.queue_ns) == (900, 800)
    assert first.timings.compute_input_ns == 1 + 10
    assert first.timings.compute_infer_ns == 2
    assert first.timings.compute_output_ns == 3 + 20
    assert first.timings.batch_size == second.timings.batch_size == 4  # every row run together
    assert (first.timings.executions, second.timings.executions) == (1, 0)  # counted once
    assert first.timings.queued_at_ns == 100


def test_a_lone_request_gets_the_models_response_itself() -> None:
    loop = asyncio.new_event_loop()
    try:
        (item,) = batch = [waiting(loop, 3, 0)]
        outcome = execute(Doubling(), [item.request], [3])
        answer(batch, outcome, batched=False)
        response = item.future.result()
    finally:
        loop.close()
    assert response is outcome.response
    assert response.timings.batch_size == 1  # not batched: what the model reported
    assert response.timings.executions == 1


def test_the_pool_runs_batches_on_its_instances_and_counts_them_busy() -> None:
    gate = threading.Event()
    fake = Doubling(gate=gate)
    outcomes: list[Outcome] = []

    async def body() -> None:
        pool = InstancePool(fake, 2)
        finished = asyncio.Event()

        def on_done(done: asyncio.Future[Outcome]) -> None:
            outcomes.append(done.result())
            if len(outcomes) == 2:
                finished.set()

        assert pool.free and pool.busy == 0
        pool.run([req(1.0)], [1], on_done)
        assert pool.free and pool.busy == 1
        pool.run([req(2.0), req(3.0)], [1, 1], on_done)
        assert not pool.free and pool.busy == 2
        gate.set()
        await asyncio.wait_for(finished.wait(), 10)
        assert pool.free and pool.busy == 0  # free again before on_done saw the outcome
        await pool.close()

    asyncio.run(body())
    assert sorted(len(o.parts) for o in outcomes) == [1, 2]
    assert fake.closed
    assert all(name.startswith("serval-instance") for name in fake.threads)
    assert len(fake.threads) == 2  # both batches ran at once, one per instance


def test_a_failed_batch_reaches_on_done_as_an_exception() -> None:
    class Failing(Doubling):
        def predict(self, request: InferenceRequest) -> InferenceResponse:
            raise ZeroDivisionError("boom")

    async def body() -> BaseException | None:
        pool = InstancePool(Failing(), 1)
        done: asyncio.Future[asyncio.Future[Outcome]] = asyncio.get_running_loop().create_future()
        pool.run([req(1.0)], [1], done.set_result)
        outcome = await asyncio.wait_for(done, 10)
        assert pool.busy == 0
        await pool.close()
        return outcome.exception()

    assert isinstance(asyncio.run(body()), ZeroDivisionError)
