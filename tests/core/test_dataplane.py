"""The data plane with fake predictors: validation, failures, statistics and events."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from serval.core.dataplane import DRAINING_REASON, DataPlane, ServerMetadata
from serval.core.errors import InvalidInputError, ModelExecutionError, ModelNotFoundError
from serval.core.events import EventBus, PredictionEvent
from serval.core.records import RequestRecord
from serval.core.tensors.datatypes import DataType
from serval.core.types import InferenceRequest, Tensor
from serval.testing import EchoPredictor
from tests.core.fakes import Harness, wait_until


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


def test_one_handle_decodes_and_runs_across_a_reload() -> None:
    # TF Serving V1 decodes by the version's metadata, then runs: both under one handle, so a
    # new version that appears in between answers only the next request.
    harness = Harness()
    harness.source.add_version("m", 1)
    plane = DataPlane(harness.manager, EventBus(), ServerMetadata("serval", "0", ()))

    async def test(h: Harness) -> None:
        await h.manager.start()
        async with plane.lease(InferenceRequest("m", [])) as handle:
            assert handle.metadata.inputs[0].name == "x"
            h.source.add_version("m", 2)
            await h.sync()
            response = await plane.infer(request(), handle=handle)
            assert response.model_version == "1"
            assert h.manager.workload()[handle.id].inflight == 1  # still held by the caller
        assert (await plane.infer(request())).model_version == "2"

    harness.run(test)


def test_labels_and_versions_route_with_todays_errors() -> None:
    harness = Harness()
    harness.source.add_version("m", 1)
    harness.source.add_version("m", 2)
    harness.source.set_spec("m", {"version_policy": "all", "labels": {"stable": 1, "old": 9}})
    plane = DataPlane(harness.manager, EventBus(), ServerMetadata("serval", "0", ()))

    async def test(h: Harness) -> None:
        await h.manager.start()
        assert (await plane.infer(request(), label="stable")).model_version == "1"
        assert plane.model_metadata("m", label="stable").versions == ("1", "2")
        with pytest.raises(ModelNotFoundError, match="model 'm' has no version label 'x'"):
            await plane.infer(request(), label="x")
        with pytest.raises(ModelNotFoundError, match="model 'm' has no version 9"):
            await plane.infer(request(), label="old")
        with pytest.raises(ModelNotFoundError, match="unknown model 'q'"):
            await plane.infer(InferenceRequest("q", []))

    harness.run(test)


def test_a_cancelled_inference_releases_its_lease() -> None:
    harness = Harness()
    harness.source.add_version("m", 1)
    gate = threading.Event()
    harness.loaders.predictors[("m", 1)] = EchoPredictor(gate=gate)
    plane = DataPlane(harness.manager, EventBus(), ServerMetadata("serval", "0", ()))

    async def test(h: Harness) -> None:
        await h.manager.start()
        task = asyncio.create_task(plane.infer(request()))
        await wait_until(lambda: any(w.inflight for w in h.manager.workload().values()))
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        gate.set()
        assert [w.inflight for w in h.manager.workload().values()] == [0]

    harness.run(test)


def test_one_record_per_request_whoever_began_it() -> None:
    harness = Harness()
    harness.source.add_version("m", 1)
    bus = EventBus()
    records: list[RequestRecord] = []
    bus.on_request(records.append)
    plane = DataPlane(harness.manager, bus, ServerMetadata("serval", "0", ()))
    from_adapter = request()
    from_adapter.record = RequestRecord("rest_v2", "op", "m", time.perf_counter_ns())

    async def body() -> None:
        await harness.manager.start()
        try:
            await plane.infer(request())  # in process: the data plane begins and emits it
            await plane.infer(from_adapter)  # the adapter's: emitted when it finishes
            assert len(records) == 1
            plane.finish(from_adapter.record)  # type: ignore[arg-type]
            with pytest.raises(InvalidInputError):
                await plane.infer(request(DataType.INT64))
        finally:
            await harness.manager.stop()

    asyncio.run(body())
    in_process, adapter, failed = records
    assert (in_process.protocol, adapter.protocol) == ("", "rest_v2")
    for record in (in_process, adapter):
        assert record.error is None and record.timings is not None
        assert record.servable is not None and record.servable.version == 1
        assert record.request_id == "r1" and record.rows == 3
        assert record.started_ns <= record.decoded_ns <= record.inferred_ns <= record.finished_ns
    assert isinstance(failed.error, InvalidInputError) and failed.timings is None
    (stats,) = plane.statistics("m")  # statistics subscribe to the same records
    assert (stats.success.count, stats.fail.count, stats.inference_count) == (2, 1, 6)


def test_draining_is_not_ready_and_still_infers() -> None:
    harness = Harness()
    harness.source.add_version("m", 1)
    plane = DataPlane(
        harness.manager,
        EventBus(),
        ServerMetadata("serval", "0", ()),
        degraded=[lambda: "the evaluation store is unreachable"],
    )

    async def body() -> None:
        await harness.manager.start()
        try:
            assert plane.ready().ready and not plane.draining
            plane.begin_draining()
            readiness = plane.ready()
            assert (readiness.ready, readiness.draining) == (False, True)
            assert readiness.reason == DRAINING_REASON
            # Degraded notes are still said; the model itself can serve and does.
            assert readiness.degraded == ("the evaluation store is unreachable",)
            assert plane.model_ready("m")
            response = await plane.infer(request())
            assert response.model_version == "1"
        finally:
            await harness.manager.stop()

    asyncio.run(body())
