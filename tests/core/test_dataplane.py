"""The data plane with fake predictors: validation, failures, statistics and events."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from serval.core.dataplane import DataPlane, ServerMetadata
from serval.core.errors import InvalidInputError, ModelExecutionError
from serval.core.events import EventBus, PredictionEvent
from serval.core.tensors.datatypes import DataType
from serval.core.types import InferenceRequest, Tensor
from tests.core.fakes import Harness


def request(datatype: DataType = DataType.FP32, name: str = "x") -> InferenceRequest:
    data = np.arange(3).astype(datatype.numpy_dtype)
    return InferenceRequest("m", [Tensor(name, datatype, data)], id="r1")


def test_infer_validates_records_and_emits() -> None:
    harness = Harness()
    harness.source.add_version("m", 1)
    bus = EventBus()
    events: list[PredictionEvent] = []
    bus.on_prediction(events.append)
    plane = DataPlane(harness.manager, bus, ServerMetadata("serval", "0", ()))

    async def body() -> None:
        await harness.manager.start()
        try:
            response = await plane.infer(request())
            assert response.model_version == "1"
            assert response.id == "r1"
            np.testing.assert_array_equal(response.outputs[0].data, [0, 1, 2])
            with pytest.raises(InvalidInputError, match="expected datatype FP32"):
                await plane.infer(request(DataType.INT64))
            with pytest.raises(InvalidInputError, match="unknown input 'q'"):
                await plane.infer(request(name="q"))
            harness.loaders.predictors[("m", 1)].fail_with = ZeroDivisionError("boom")
            with pytest.raises(
                ModelExecutionError, match="model 'm' version 1 failed: ZeroDivisionError: boom"
            ):
                await plane.infer(request())
        finally:
            await harness.manager.stop()

    asyncio.run(body())
    (stats,) = plane.statistics("m")
    assert stats.success.count == 1
    assert stats.fail.count == 3
    assert stats.inference_count == 3
    assert [e.error is None for e in events] == [True, False, False, False]
    assert events[0].response is not None and events[0].id.version == 1
