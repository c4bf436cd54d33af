"""Dynamic batching with a fake predictor that records what it ran: rows back to their owners,
batches forming under load, no delay on an idle model, queue bound, deadlines, priorities."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from serval.core.batching.servable import BatchingOptions, BatchingServable
from serval.core.errors import (
    DeadlineExceededError,
    InvalidInputError,
    ModelConfigError,
    ModelExecutionError,
    ModelNotReadyError,
    OverloadedError,
)
from serval.core.model_spec import ModelSpec
from serval.core.statistics import VersionStatistics
from serval.core.tensors.datatypes import DataType
from serval.core.types import (
    InferenceRequest,
    InferenceResponse,
    InferenceTimings,
    RequestedOutput,
    ServableMetadata,
    Tensor,
    TensorSpec,
)

FP32 = DataType.FP32


@dataclass
class RecordingPredictor:
    """y = 2x and z = x + 1; records each call's request. ``gate`` holds every call until set;
    ``delay_s`` sleeps in each call."""

    delay_s: float = 0.0
    gate: threading.Event | None = None
    fail_with: Exception | None = None
    calls: list[InferenceRequest] = field(default_factory=list)
    threads: set[str] = field(default_factory=set)
    concurrent: int = 0
    most_concurrent: int = 0
    closed: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def metadata(self) -> ServableMetadata:
        return ServableMetadata(
            platform="fake",
            inputs=(TensorSpec("x", FP32, (-1, -1)),),
            outputs=(TensorSpec("y", FP32, (-1, -1)), TensorSpec("z", FP32, (-1, -1))),
        )

    def predict(self, request: InferenceRequest) -> InferenceResponse:
        with self.lock:
            self.calls.append(request)
            self.threads.add(threading.current_thread().name)
            self.concurrent += 1
            self.most_concurrent = max(self.most_concurrent, self.concurrent)
        try:
            if self.gate is not None:
                assert self.gate.wait(10), "the test never opened the gate"
            if self.delay_s:
                time.sleep(self.delay_s)
            if self.fail_with is not None:
                raise self.fail_with
            x = request.inputs[0].data
            names = [o.name for o in request.outputs] if request.outputs else ["y", "z"]
            values = {"y": x * 2, "z": x + 1}
            outputs = [Tensor(name, FP32, values[name]) for name in names]
            return InferenceResponse(request.model_name, outputs)
        finally:
            with self.lock:
                self.concurrent -= 1

    def close(self) -> None:
        self.closed = True

    @property
    def batch_rows(self) -> list[int]:
        return [call.inputs[0].data.shape[0] for call in self.calls]

    def ran(self, marker: float) -> bool:
        """Whether a request whose first value is ``marker`` reached the model."""
        return any(marker in call.inputs[0].data[:, 0] for call in self.calls)


def req(rows: int, start: float, width: int = 2, **fields: Any) -> InferenceRequest:
    data = (start + np.arange(rows * width, dtype=np.float32)).reshape(rows, width)
    return InferenceRequest("m", [Tensor("x", FP32, data)], **fields)


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(coro)


async def until(condition: Any, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition never held"
        await asyncio.sleep(0.001)


def servable(predictor: RecordingPredictor, **options: Any) -> BatchingServable:
    return BatchingServable(predictor, BatchingOptions(**options))


def test_mixed_row_counts_each_get_their_own_rows_and_batches_form() -> None:
    fake = RecordingPredictor(delay_s=0.02)
    batching = servable(fake, max_batch_size=16)

    async def body() -> list[tuple[InferenceRequest, InferenceResponse]]:
        requests = [req(1 + i % 4, start=1000.0 * i) for i in range(40)]
        responses = await asyncio.gather(*(batching.predict(r) for r in requests))
        await batching.close()
        return list(zip(requests, responses, strict=True))

    for request, response in run(body()):
        x = request.inputs[0].data
        y, z = response.outputs
        np.testing.assert_array_equal(y.data, x * 2)
        np.testing.assert_array_equal(z.data, x + 1)
    assert max(fake.batch_rows) > 1, "no batch formed under concurrency"
    assert max(fake.batch_rows) <= 16
    assert sum(fake.batch_rows) == sum(1 + i % 4 for i in range(40))
    assert len(fake.calls) < 40
    assert fake.closed
    assert not any(name.startswith("MainThread") for name in fake.threads)


def test_a_lone_request_on_an_idle_model_runs_at_once() -> None:
    fake = RecordingPredictor()
    batching = servable(fake, max_batch_size=8, instances=2, max_queue_delay_s=2.0)

    async def body() -> float:
        started = time.perf_counter()
        await batching.predict(req(1, 0.0))
        took = time.perf_counter() - started
        await batching.close()
        return took

    assert run(body()) < 1.0  # generous: the configured delay is 2 s
    assert fake.batch_rows == [1]


def test_with_an_instance_busy_a_batch_waits_for_a_preferred_size() -> None:
    gate = threading.Event()
    fake = RecordingPredictor(gate=gate)
    batching = servable(
        fake, max_batch_size=8, instances=2, max_queue_delay_s=30.0, preferred_batch_sizes=(4,)
    )

    async def body() -> None:
        slow = asyncio.ensure_future(batching.predict(req(1, -1.0)))
        await until(lambda: len(fake.calls) == 1)
        # One instance is busy and one free: these wait for each other up to 4 rows.
        rest = [asyncio.ensure_future(batching.predict(req(1, 10.0 * i))) for i in range(4)]
        await until(lambda: len(fake.calls) == 2)
        gate.set()
        await asyncio.gather(slow, *rest)
        await batching.close()

    run(body())
    assert fake.batch_rows == [1, 4]


def test_delay_ends_a_waiting_batch() -> None:
    gate = threading.Event()
    fake = RecordingPredictor(gate=gate)
    batching = servable(fake, max_batch_size=8, instances=2, max_queue_delay_s=0.05)

    async def body() -> None:
        slow = asyncio.ensure_future(batching.predict(req(1, -1.0)))
        await until(lambda: len(fake.calls) == 1)
        waiting = asyncio.ensure_future(batching.predict(req(2, 5.0)))
        await until(lambda: len(fake.calls) == 2)  # after the delay, beside the busy one
        gate.set()
        await asyncio.gather(slow, waiting)
        await batching.close()

    run(body())
    assert fake.batch_rows == [1, 2]


def test_requests_that_cannot_share_a_batch_run_apart() -> None:
    gate = threading.Event()
    fake = RecordingPredictor(gate=gate)
    batching = servable(fake, max_batch_size=32)
    only_z = [RequestedOutput("z")]

    async def body() -> list[tuple[InferenceRequest, InferenceResponse]]:
        first = asyncio.ensure_future(batching.predict(req(1, -1.0)))
        await until(lambda: len(fake.calls) == 1)
        requests = [
            req(2, 0.0, width=3),
            req(1, 100.0, width=4),
            req(3, 200.0, width=3),
            req(1, 300.0, width=3, outputs=only_z),
            req(2, 400.0, width=4),
            req(1, 500.0, width=3, outputs=only_z),
        ]
        tasks = [asyncio.ensure_future(batching.predict(r)) for r in requests]
        await until(lambda: batching.waiting == len(requests))
        gate.set()
        await first
        responses = await asyncio.gather(*tasks)
        await batching.close()
        return list(zip(requests, responses, strict=True))

    for request, response in run(body()):
        x = request.inputs[0].data
        if request.outputs:
            assert [t.name for t in response.outputs] == ["z"]
            np.testing.assert_array_equal(response.outputs[0].data, x + 1)
        else:
            np.testing.assert_array_equal(response.outputs[0].data, x * 2)
    shapes = [call.inputs[0].data.shape for call in fake.calls[1:]]
    selections = [call.outputs is not None for call in fake.calls[1:]]
    # Width 3 with all outputs, width 4, width 3 with output z: three batches.
    assert sorted(zip(shapes, selections, strict=True)) == [
        ((2, 3), True),
        ((3, 4), False),
        ((5, 3), False),
    ]


def test_queue_overflow_is_refused_and_no_accepted_request_is_lost() -> None:
    gate = threading.Event()
    fake = RecordingPredictor(gate=gate)
    batching = servable(fake, max_batch_size=4, max_queue_size=2)

    async def body() -> None:
        running = asyncio.ensure_future(batching.predict(req(1, 0.0)))
        await until(lambda: len(fake.calls) == 1)
        queued = [asyncio.ensure_future(batching.predict(req(1, v))) for v in (10.0, 20.0)]
        await asyncio.sleep(0)
        assert batching.waiting == 2
        with pytest.raises(OverloadedError, match="max_queue_size") as refused:
            await batching.predict(req(1, 30.0))
        assert refused.value.retry_after_s is not None
        gate.set()
        for task, value in zip([running, *queued], (0.0, 10.0, 20.0), strict=True):
            response = await task
            assert response.outputs[0].data[0, 0] == value * 2
        await batching.predict(req(1, 40.0))  # room again
        await batching.close()

    run(body())
    assert not fake.ran(30.0)
    assert fake.batch_rows == [1, 2, 1]


def test_a_request_past_its_deadline_is_never_run() -> None:
    gate = threading.Event()
    fake = RecordingPredictor(gate=gate)
    batching = servable(fake, max_batch_size=4)

    async def body() -> None:
        with pytest.raises(DeadlineExceededError):
            await batching.predict(req(1, 1.0, deadline=time.monotonic() - 1))
        running = asyncio.ensure_future(batching.predict(req(1, 2.0)))
        await until(lambda: len(fake.calls) == 1)
        soon = time.monotonic() + 0.02
        expiring = asyncio.ensure_future(batching.predict(req(1, 3.0, deadline=soon)))
        patient = asyncio.ensure_future(batching.predict(req(1, 4.0)))
        # The deadline passes while the instance is busy.
        await until(lambda: batching.waiting == 2 and time.monotonic() > soon)
        gate.set()
        await running
        with pytest.raises(DeadlineExceededError, match="passed before the model ran it"):
            await expiring
        assert (await patient).outputs[0].data[0, 0] == 8.0
        await batching.close()

    run(body())
    assert not fake.ran(1.0)
    assert not fake.ran(3.0)
    assert fake.ran(4.0)


def test_a_caller_that_gives_up_is_dropped_from_the_queue() -> None:
    gate = threading.Event()
    fake = RecordingPredictor(gate=gate)
    batching = servable(fake, max_batch_size=4, max_queue_size=1)

    async def body() -> None:
        running = asyncio.ensure_future(batching.predict(req(1, 1.0)))
        await until(lambda: len(fake.calls) == 1)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(batching.predict(req(1, 2.0)), 0.01)
        assert batching.waiting == 0  # its place in the queue is free again
        later = asyncio.ensure_future(batching.predict(req(1, 3.0)))
        gate.set()
        await asyncio.gather(running, later)
        await batching.close()

    run(body())
    assert not fake.ran(2.0)
    assert fake.ran(3.0)


def test_priorities_reorder_queued_requests() -> None:
    gate = threading.Event()
    fake = RecordingPredictor(gate=gate)
    # max_batch_size 0: each request runs alone, so the order of calls is the queue's order.
    batching = servable(fake, priority_levels=3)

    async def body() -> None:
        running = asyncio.ensure_future(batching.predict(req(1, 0.0)))
        await until(lambda: len(fake.calls) == 1)
        # priority 0 is the default level, here the lowest (3).
        order = [(3, 1.0), (0, 2.0), (1, 3.0), (2, 4.0), (1, 5.0)]
        tasks = [asyncio.ensure_future(batching.predict(req(1, v, priority=p))) for p, v in order]
        await until(lambda: batching.waiting == len(order))
        with pytest.raises(InvalidInputError, match="1 \\(highest\\) to 3"):
            await batching.predict(req(1, 9.0, priority=4))
        gate.set()
        await asyncio.gather(running, *tasks)
        await batching.close()

    run(body())
    firsts = [float(call.inputs[0].data[0, 0]) for call in fake.calls]
    assert firsts == [0.0, 3.0, 5.0, 4.0, 1.0, 2.0]


def test_priorities_within_a_batch_take_the_highest_first() -> None:
    gate = threading.Event()
    fake = RecordingPredictor(gate=gate)
    batching = servable(fake, max_batch_size=2, priority_levels=2, default_priority_level=1)

    async def body() -> None:
        running = asyncio.ensure_future(batching.predict(req(1, 0.0)))
        await until(lambda: len(fake.calls) == 1)
        low = [asyncio.ensure_future(batching.predict(req(1, v, priority=2))) for v in (1, 2)]
        high = [asyncio.ensure_future(batching.predict(req(1, v))) for v in (3, 4)]  # default 1
        await until(lambda: batching.waiting == 4)
        gate.set()
        await asyncio.gather(running, *low, *high)
        await batching.close()

    run(body())
    assert [call.inputs[0].data[:, 0].tolist() for call in fake.calls] == [
        [0.0],
        [3.0, 4.0],
        [1.0, 2.0],
    ]


def test_instances_run_batches_at_the_same_time_off_the_event_loop() -> None:
    fake = RecordingPredictor(delay_s=0.05)
    batching = servable(fake, max_batch_size=0, instances=3)

    async def body() -> None:
        await asyncio.gather(*(batching.predict(req(1, float(i))) for i in range(9)))
        await batching.close()

    run(body())
    assert fake.most_concurrent == 3
    assert len(fake.threads) == 3
    assert all(name.startswith("serval-instance") for name in fake.threads)


def test_a_shared_executor_is_used_and_left_open() -> None:
    fake = RecordingPredictor()
    pool = ThreadPoolExecutor(2, thread_name_prefix="shared")
    batching = BatchingServable(fake, BatchingOptions(max_batch_size=4), pool)

    async def body() -> None:
        await batching.predict(req(2, 0.0))
        await batching.close()

    run(body())
    assert pool.submit(lambda: 1).result() == 1
    pool.shutdown()
    assert all(name.startswith("shared") for name in fake.threads)


def test_rows_must_fit_and_agree() -> None:
    fake = RecordingPredictor()
    batching = servable(fake, max_batch_size=4)
    two_inputs = InferenceRequest(
        "m",
        [
            Tensor("x", FP32, np.zeros((2, 1), np.float32)),
            Tensor("w", FP32, np.zeros((3, 1), np.float32)),
        ],
    )
    scalar = InferenceRequest("m", [Tensor("x", FP32, np.float32(1.0).reshape(()))])

    async def body() -> None:
        with pytest.raises(InvalidInputError, match="max_batch_size=4"):
            await batching.predict(req(5, 0.0))
        with pytest.raises(InvalidInputError, match="'x' has 2 rows, 'w' has 3"):
            await batching.predict(two_inputs)
        with pytest.raises(InvalidInputError, match="scalar"):
            await batching.predict(scalar)
        await batching.close()

    run(body())
    assert fake.calls == []


def test_a_failed_batch_fails_its_requests_only() -> None:
    gate = threading.Event()
    fake = RecordingPredictor(gate=gate)
    batching = servable(fake, max_batch_size=8)

    async def body() -> None:
        first = asyncio.ensure_future(batching.predict(req(1, 0.0)))
        await until(lambda: len(fake.calls) == 1)
        fake.fail_with = ZeroDivisionError("boom")
        doomed = [asyncio.ensure_future(batching.predict(req(1, v))) for v in (1.0, 2.0)]
        await until(lambda: batching.waiting == 2)
        gate.set()
        results = await asyncio.gather(first, *doomed, return_exceptions=True)
        assert all(isinstance(r, ZeroDivisionError) for r in results)
        fake.fail_with = None
        assert (await batching.predict(req(1, 3.0))).outputs[0].data[0, 0] == 6.0
        await batching.close()

    run(body())


def test_outputs_that_do_not_follow_the_batch_fail_clearly() -> None:
    class Summing(RecordingPredictor):
        """Answers one row whatever it is given."""

        def predict(self, request: InferenceRequest) -> InferenceResponse:
            super().predict(request)
            total = request.inputs[0].data.sum(axis=0, keepdims=True)
            return InferenceResponse("m", [Tensor("y", FP32, total)])

    gate = threading.Event()
    fake = Summing(gate=gate)
    batching = servable(fake, max_batch_size=8)

    async def body() -> None:
        alone = asyncio.ensure_future(batching.predict(req(1, 0.0)))
        await until(lambda: len(fake.calls) == 1)
        merged = [asyncio.ensure_future(batching.predict(req(1, v))) for v in (1.0, 2.0)]
        await until(lambda: batching.waiting == 2)
        gate.set()
        assert (await alone).outputs[0].data.shape == (1, 2)
        for task in merged:
            with pytest.raises(ModelExecutionError, match="first dimension must be 2"):
                await task
        await batching.close()

    run(body())


def test_closing_refuses_what_waits() -> None:
    gate = threading.Event()
    fake = RecordingPredictor(gate=gate)
    batching = servable(fake, max_batch_size=1)

    async def body() -> None:
        running = asyncio.ensure_future(batching.predict(req(1, 0.0)))
        await until(lambda: len(fake.calls) == 1)
        waiting = asyncio.ensure_future(batching.predict(req(1, 1.0)))
        await asyncio.sleep(0)
        closing = asyncio.ensure_future(batching.close())
        with pytest.raises(ModelNotReadyError):
            await waiting
        gate.set()
        await running
        await closing
        with pytest.raises(ModelNotReadyError):
            await batching.predict(req(1, 2.0))

    run(body())
    assert fake.closed
    assert not fake.ran(1.0)


def test_timings_count_executions_and_batch_sizes() -> None:
    gate = threading.Event()
    fake = RecordingPredictor(gate=gate)
    batching = servable(fake, max_batch_size=8)
    stats = VersionStatistics("m", 1)

    async def body() -> list[InferenceResponse]:
        first = asyncio.ensure_future(batching.predict(req(1, 0.0)))
        await until(lambda: len(fake.calls) == 1)
        rest = [asyncio.ensure_future(batching.predict(req(r, 0.0))) for r in (1, 2, 3)]
        await until(lambda: batching.waiting == 3)
        gate.set()
        responses = await asyncio.gather(first, *rest)
        await batching.close()
        return responses

    responses = run(body())
    for response, rows in zip(responses, (1, 1, 2, 3), strict=True):
        stats.record_success(1000, response.timings, rows)
    assert [r.timings.batch_size for r in responses] == [1, 6, 6, 6]
    assert sum(r.timings.executions for r in responses) == 2
    assert all(r.timings.queued_at_ns > 0 for r in responses)
    assert stats.execution_count == 2
    assert stats.inference_count == 7
    assert sorted(stats.batches) == [1, 6]
    assert stats.batches[6].compute_infer.count == 1
    assert stats.success.count == 4


def test_statistics_without_batching_count_one_execution_per_request() -> None:
    stats = VersionStatistics("m", 1)
    stats.record_success(10, InferenceTimings(batch_size=3), 3)
    stats.record_success(10, InferenceTimings(batch_size=3), 3)
    assert stats.execution_count == 2
    assert stats.batches[3].compute_infer.count == 2


# -- model.yaml ------------------------------------------------------------------------------


def test_spec_fields_and_options() -> None:
    spec = ModelSpec.parse(
        {
            "max_batch_size": 16,
            "instances": 2,
            "dynamic_batching": {
                "max_queue_delay_us": 500,
                "preferred_batch_sizes": [8, 4, 8],
                "max_queue_size": 100,
                "priority_levels": 2,
                "default_priority_level": 1,
            },
        },
        source="m/model.yaml",
    )
    assert spec.scheduled
    assert BatchingOptions.from_spec(spec) == BatchingOptions(
        max_batch_size=16,
        instances=2,
        max_queue_delay_s=0.0005,
        preferred_batch_sizes=(4, 8),
        max_queue_size=100,
        priority_levels=2,
        default_priority_level=1,
    )
    assert not ModelSpec().scheduled
    assert ModelSpec(instances=1).scheduled
    assert BatchingOptions.from_spec(ModelSpec(max_batch_size=4)).instances == 1


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"dynamic_batching": {"max_queue_delay_us": 10}}, "need max_batch_size > 0"),
        (
            {"max_batch_size": 4, "dynamic_batching": {"preferred_batch_sizes": [8]}},
            "exceed max_batch_size 4",
        ),
        (
            {"dynamic_batching": {"priority_levels": 2, "default_priority_level": 3}},
            "above priority_levels 2",
        ),
        ({"instances": 0}, "instances"),
        ({"dynamic_batching": {"max_queue_size": -1}}, "max_queue_size"),
        ({"dynamic_batching": {"preferred_batch_sizes": [0]}}, "positive"),
        ({"dynamic_batching": {"delay": 1}}, "unknown key"),
    ],
)
def test_spec_errors_name_the_key(doc: dict[str, Any], message: str) -> None:
    with pytest.raises(ModelConfigError, match=message):
        ModelSpec.parse(doc, source="m/model.yaml")


def test_a_submitted_request_waits_in_the_queue_until_answered_or_withdrawn() -> None:
    gate = threading.Event()
    fake = RecordingPredictor(gate=gate)
    batching = servable(fake, max_batch_size=4)

    async def body() -> None:
        busy = asyncio.ensure_future(batching.predict(req(1, -1.0)))
        await until(lambda: len(fake.calls) == 1)
        kept = batching.submit(req(1, 10.0))  # in the queue when submit returns
        dropped = batching.submit(req(2, 20.0))
        assert batching.waiting == 2
        with pytest.raises(InvalidInputError, match="the request has 5 rows"):
            batching.submit(req(5, 30.0))  # refused at once, as predict would
        batching.withdraw(dropped)
        assert dropped.future.cancelled() and batching.waiting == 1
        gate.set()
        await busy
        answer = await kept.future
        batching.withdraw(kept)  # harmless once answered
        np.testing.assert_array_equal(answer.outputs[0].data, req(1, 10.0).inputs[0].data * 2)
        assert batching.waiting == 0
        await batching.close()

    run(body())
    assert fake.batch_rows == [1, 1]
    assert not fake.ran(20.0)
