"""Deadlines and priorities: Triton's request parameters, answering at the deadline, and the
thread-pool servable dropping an expired request."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from serval.core.batching.servable import BatchingOptions, BatchingServable
from serval.core.deadlines import predict_by_deadline
from serval.core.errors import DeadlineExceededError
from serval.core.servable import ThreadPoolServable
from serval.core.tensors.datatypes import DataType
from serval.core.types import InferenceRequest, Tensor
from serval.testing import EchoPredictor
from tests.core.batching.test_batching import RecordingPredictor, req, until


def test_the_earlier_deadline_wins() -> None:
    x = Tensor("x", DataType.FP32, np.zeros(1, np.float32))
    request = InferenceRequest("m", [x])
    request.tighten_deadline(101.0)
    request.tighten_deadline(102.0)
    assert request.deadline == 101.0
    request.tighten_deadline(100.5)
    assert request.deadline == 100.5


def test_the_answer_comes_at_the_deadline_and_the_request_never_runs() -> None:
    gate = threading.Event()
    fake = RecordingPredictor(gate=gate)
    batching = BatchingServable(fake, BatchingOptions(max_batch_size=4))

    async def body() -> None:
        running = asyncio.ensure_future(batching.predict(req(1, 1.0)))
        await until(lambda: len(fake.calls) == 1)
        late = req(1, 2.0, deadline=time.monotonic() + 0.02)
        with pytest.raises(DeadlineExceededError, match="within the request's deadline"):
            await predict_by_deadline(batching, late)
        assert batching.waiting == 0
        gate.set()
        await running
        expired = req(1, 3.0, deadline=time.monotonic() - 1)
        with pytest.raises(DeadlineExceededError, match="passed before"):
            await predict_by_deadline(batching, expired)
        await batching.close()

    asyncio.run(body())
    assert not fake.ran(2.0)
    assert not fake.ran(3.0)


def test_thread_pool_servable_drops_a_request_that_waited_past_its_deadline() -> None:
    pool = ThreadPoolExecutor(1)
    echo = EchoPredictor()
    servable = ThreadPoolServable(echo, pool)
    blocker = threading.Event()
    pool.submit(blocker.wait, 10)  # the only thread is busy

    async def body() -> None:
        waiting = asyncio.ensure_future(servable.predict(req(1, 0.0, deadline=time.monotonic())))
        give_up = time.monotonic() + 5
        while pool._work_queue.qsize() == 0:  # until the request waits behind the blocker
            assert time.monotonic() < give_up, "the request never reached the pool"
            await asyncio.sleep(0.001)
        blocker.set()
        with pytest.raises(DeadlineExceededError):
            await waiting

    asyncio.run(body())
    pool.shutdown()
    assert echo.calls == 0
