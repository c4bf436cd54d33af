"""ThreadPoolServable's share of the shared pool: bounded calls, a bounded wait, timeouts that
keep the hung call's slot, requests of gone clients never run, SystemExit as a model error."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pytest

from serval.core.composition.time_limit import TimeLimitedServable
from serval.core.errors import (
    ClientGoneError,
    DeadlineExceededError,
    ModelExecutionError,
    OverloadedError,
)
from serval.core.servable import CallLimits, ThreadPoolServable
from serval.core.tensors.datatypes import DataType
from serval.core.types import InferenceRequest, InferenceResponse, ServableMetadata, Tensor


@dataclass
class GatedPredictor:
    """Blocks each call until ``gate`` is set; counts calls that started."""

    gate: threading.Event = field(default_factory=threading.Event)
    started: int = 0
    raise_exit: bool = False

    @property
    def metadata(self) -> ServableMetadata:
        return ServableMetadata("test", (), ())

    def predict(self, request: InferenceRequest) -> InferenceResponse:
        self.started += 1
        if self.raise_exit:
            raise SystemExit(2)
        self.gate.wait(10)
        return InferenceResponse(request.model_name, [])

    def close(self) -> None:
        pass


def request() -> InferenceRequest:
    return InferenceRequest("m", [Tensor("x", DataType.FP32, np.zeros(1, np.float32))])


async def until(predicate: object) -> None:
    async with asyncio.timeout(5):
        while not predicate():  # type: ignore[operator]
            await asyncio.sleep(0.01)


def test_calls_are_bounded_and_waiting_is_bounded() -> None:
    async def scenario() -> None:
        predictor = GatedPredictor()
        with ThreadPoolExecutor(4) as pool:
            servable = ThreadPoolServable(predictor, pool, CallLimits(2, max_waiting=1))
            running = [asyncio.create_task(servable.predict(request())) for _ in range(3)]
            await until(lambda: predictor.started == 2)
            with pytest.raises(OverloadedError) as raised:
                await servable.predict(request())
            assert raised.value.retry_after_s == 1.0
            assert predictor.started == 2  # the third waits, holding no thread
            predictor.gate.set()
            await asyncio.gather(*running)
            assert predictor.started == 3

    asyncio.run(scenario())


def test_a_timed_out_call_keeps_its_slot_until_it_returns() -> None:
    async def scenario() -> None:
        predictor = GatedPredictor()
        with ThreadPoolExecutor(4) as pool:
            servable = ThreadPoolServable(predictor, pool, CallLimits(1))
            limited = TimeLimitedServable(servable, 0.1)
            with pytest.raises(DeadlineExceededError, match="timeout_s"):
                await limited.predict(request())
            assert servable.abandoned_calls == 1
            with pytest.raises(DeadlineExceededError):  # waits behind the hung call
                await limited.predict(request())
            assert predictor.started == 1
            predictor.gate.set()
            await until(lambda: servable._slots.running == 0)
            await servable.predict(request())  # the slot is back
            assert predictor.started == 2

    asyncio.run(scenario())


def test_a_request_whose_client_left_never_runs() -> None:
    async def scenario() -> None:
        predictor = GatedPredictor()
        gone = asyncio.Event()
        with ThreadPoolExecutor(4) as pool:
            servable = ThreadPoolServable(predictor, pool, CallLimits(1))
            first = asyncio.create_task(servable.predict(request()))
            await until(lambda: predictor.started == 1)
            waiting = request()
            waiting.client_gone = gone.wait
            second = asyncio.create_task(servable.predict(waiting))
            await asyncio.sleep(0.05)
            gone.set()
            with pytest.raises(ClientGoneError):
                await second
            cancelled = asyncio.create_task(servable.predict(request()))
            await asyncio.sleep(0.05)
            cancelled.cancel()  # gRPC: the client cancels
            predictor.gate.set()
            await first
            assert predictor.started == 1

    asyncio.run(scenario())


def test_system_exit_is_a_model_error() -> None:
    async def scenario() -> None:
        with ThreadPoolExecutor(2) as pool:
            servable = ThreadPoolServable(GatedPredictor(raise_exit=True), pool, CallLimits(1))
            with pytest.raises(ModelExecutionError, match="'m' raised SystemExit"):
                await servable.predict(request())
            assert servable._slots.running == 0

    asyncio.run(scenario())
