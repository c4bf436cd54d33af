"""Steps of one pipeline level on models with a queue: they join it together, with no task of
their own, so they share a batch; a failure, or the request's deadline, takes the others
back out of the queue and releases their leases."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import numpy as np
import pytest

from serval.core.batching.servable import BatchingOptions, BatchingServable
from serval.core.errors import DeadlineExceededError, InvalidInputError, ModelExecutionError
from serval.core.model_spec import ModelSpec
from serval.core.servable import Predictor, Servable
from tests.core.composition.test_composite_servables import (
    Arrays,
    FnPredictor,
    plane,
    scaler,
    x_request,
)
from tests.core.fakes import Harness, wait_until


def gated(predictor: FnPredictor, gate: threading.Event) -> FnPredictor:
    """``predictor``, each call held until ``gate`` opens."""
    inner = predictor.fn

    def fn(v: Arrays) -> Arrays:
        assert gate.wait(10), "the test never opened the gate"
        return inner(v)

    predictor.fn = fn
    return predictor


def batching_harness(
    models: dict[str, FnPredictor], pipeline: dict[str, Any], small: str = ""
) -> Harness:
    """A harness with ``models`` and ``pipeline`` as model ``p``. Each model has a queue and
    one instance, and batches 8 rows at most (model ``small``: 2)."""

    def batching(predictor: Predictor, spec: ModelSpec) -> Servable:
        rows = 2 if small and predictor is models[small] else 8
        return BatchingServable(predictor, BatchingOptions(max_batch_size=rows))

    h = Harness(base=batching)
    for name, predictor in models.items():
        h.source.add_version(name, 1)
        h.loaders.predictors[(name, 1)] = predictor  # type: ignore[assignment]
    h.source.add_version("p", 1)
    h.source.set_spec("p", pipeline)
    return h


def two_steps(first: str, second: str) -> dict[str, Any]:
    return {
        "pipeline": {
            "steps": [
                {"name": "first", "model": first, "inputs": {"x": "inputs.x"}},
                {"name": "second", "model": second, "inputs": {"x": "inputs.x"}},
            ],
            "outputs": {"y": "first.y", "y2": "second.y"},
        }
    }


def queue_of(h: Harness, name: str) -> BatchingServable:
    lease = h.manager.lease(name)
    try:
        servable = lease.servable
    finally:
        lease.release()
    assert isinstance(servable, BatchingServable)
    return servable


def inflight(h: Harness, name: str) -> int:
    return sum(load.inflight for id, load in h.manager.workload().items() if id.name == name)


def test_independent_steps_on_a_model_with_a_queue_share_a_batch_without_a_task() -> None:
    gate = threading.Event()
    models = {"two": gated(scaler(2), gate)}
    h = batching_harness(models, two_steps("two", "two"))

    async def test(h: Harness) -> None:
        await h.manager.start()
        dp = plane(h)
        queue = queue_of(h, "two")
        busy = asyncio.create_task(dp.infer(x_request("two", np.zeros((1, 2), np.float32))))
        await wait_until(lambda: len(models["two"].calls) == 1)  # the instance is busy
        tasks = len(asyncio.all_tasks())
        x = np.arange(6, dtype=np.float32).reshape(3, 2)
        request = asyncio.create_task(dp.infer(x_request("p", x)))
        await wait_until(lambda: queue.waiting == 2)
        assert len(asyncio.all_tasks()) == tasks + 1  # the request's own task, no step's
        gate.set()
        response = await request
        await busy
        outputs = {t.name: t.data for t in response.outputs}
        np.testing.assert_allclose(outputs["y"], 2 * x)
        np.testing.assert_allclose(outputs["y2"], 2 * x)
        assert models["two"].calls == [1, 6]  # both steps' rows in one batch
        (two,) = dp.statistics("two")
        assert two.success.count == 3 and two.inference_count == 7
        assert inflight(h, "two") == 0

    h.run(test)


def test_a_step_refused_at_once_takes_the_step_begun_beside_it_out_of_the_queue() -> None:
    gate = threading.Event()
    models = {"two": gated(scaler(2), gate), "small": scaler(3)}
    h = batching_harness(models, two_steps("two", "small"), small="small")

    async def test(h: Harness) -> None:
        await h.manager.start()
        dp = plane(h)
        queue = queue_of(h, "two")
        busy = asyncio.create_task(dp.infer(x_request("two", np.zeros((1, 2), np.float32))))
        await wait_until(lambda: len(models["two"].calls) == 1)
        # `small` batches at most 2 rows: 3 rows are refused before they are queued, after
        # step `first` joined the queue of `two`.
        with pytest.raises(
            InvalidInputError,
            match=r"pipeline 'p' step 'second' \(model 'small'\): the request has 3 rows",
        ):
            await dp.infer(x_request("p", np.ones((3, 2), np.float32)))
        assert queue.waiting == 0
        assert inflight(h, "two") == 1  # the busy request's lease only
        gate.set()
        await busy
        assert models["two"].calls == [1]  # step `first` never ran
        assert models["small"].calls == []
        (small,) = dp.statistics("small")
        assert small.fail.count == 1

    h.run(test)


def test_steps_waiting_in_a_queue_past_the_deadline_leave_it() -> None:
    gate = threading.Event()
    models = {"two": gated(scaler(2), gate)}
    h = batching_harness(models, two_steps("two", "two"))

    async def test(h: Harness) -> None:
        await h.manager.start()
        dp = plane(h)
        queue = queue_of(h, "two")
        busy = asyncio.create_task(dp.infer(x_request("two", np.zeros((1, 2), np.float32))))
        await wait_until(lambda: len(models["two"].calls) == 1)
        request = x_request("p", np.ones((1, 2), np.float32))
        request.deadline = time.monotonic() + 0.05
        with pytest.raises(DeadlineExceededError):
            await dp.infer(request)
        assert queue.waiting == 0
        assert inflight(h, "two") == 1
        gate.set()
        await busy
        assert models["two"].calls == [1]

    h.run(test)


def test_steps_failing_in_one_batch_answer_one_error_naming_a_step() -> None:
    gate = threading.Event()
    models = {"two": gated(scaler(2), gate)}
    h = batching_harness(models, two_steps("two", "two"))

    async def test(h: Harness) -> None:
        await h.manager.start()
        dp = plane(h)
        queue = queue_of(h, "two")
        busy = asyncio.create_task(dp.infer(x_request("two", np.zeros((1, 2), np.float32))))
        await wait_until(lambda: len(models["two"].calls) == 1)
        request = asyncio.create_task(dp.infer(x_request("p", np.ones((1, 2), np.float32))))
        await wait_until(lambda: queue.waiting == 2)

        def crash(v: Arrays) -> Arrays:
            raise ZeroDivisionError("boom")

        models["two"].fn = crash  # the batch both steps share fails
        gate.set()
        await busy
        with pytest.raises(
            ModelExecutionError,
            match=r"pipeline 'p' step '(first|second)' \(model 'two'\) failed: ZeroDivisionError",
        ):
            await request
        assert models["two"].calls == [1, 2]  # one batch, both steps
        assert inflight(h, "two") == 0
        (two,) = dp.statistics("two")
        assert two.fail.count == 2  # each step's call counts as failed

    h.run(test)
