"""Shadow copies through the data plane: answered by the primary, compared, bounded."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass

import numpy as np
import pytest

from serval.core.dataplane import DataPlane, ServerMetadata
from serval.core.errors import ModelExecutionError
from serval.core.events import EventBus
from serval.core.lifecycle.snapshot import VersionSnapshot
from serval.core.records import RequestRecord
from serval.core.routing.policy import Choice
from serval.core.routing.router import Router
from serval.core.routing.shadow import ShadowBook
from serval.core.shadow import ShadowedHandle, ShadowRunner
from serval.core.tensors.datatypes import DataType
from serval.core.types import (
    InferenceRequest,
    InferenceResponse,
    ServableMetadata,
    Tensor,
    TensorSpec,
)
from serval.testing import EchoPredictor
from tests.core.fakes import Harness, wait_until


class PrimaryWithShadow:
    """A test policy: version 1 answers, version 2 gets a copy."""

    def choose(self, request: InferenceRequest, snapshot: VersionSnapshot) -> Choice:
        return Choice(1, (2,))


@dataclass
class Scores(EchoPredictor):
    """Class scores ``[[x + shift, 0.5], ...]`` and their argmax as ``label``."""

    shift: float = 0.0

    @property
    def metadata(self) -> ServableMetadata:
        return ServableMetadata(
            platform="fake",
            inputs=(TensorSpec("x", DataType.FP32, (-1,)),),
            outputs=(
                TensorSpec("scores", DataType.FP32, (-1, 2)),
                TensorSpec("label", DataType.INT64, (-1,)),
            ),
        )

    def predict(self, request: InferenceRequest) -> InferenceResponse:
        x = request.inputs[0].data
        scores = np.stack([x + np.float32(self.shift), np.full_like(x, 0.5)], axis=1)
        label = scores.argmax(axis=1).astype(np.int64)
        return InferenceResponse(
            request.model_name,
            [Tensor("scores", DataType.FP32, scores), Tensor("label", DataType.INT64, label)],
        )


def request(*values: float) -> InferenceRequest:
    x = Tensor("x", DataType.FP32, np.array(values, np.float32))
    return InferenceRequest("m", [x], id="r1")


class Rig:
    """Model ``m`` serving versions 1 and 2, routed by ``PrimaryWithShadow``."""

    def __init__(self, max_inflight: int = 8) -> None:
        self.harness = Harness()
        self.harness.source.add_version("m", 1)
        self.harness.source.add_version("m", 2)
        self.harness.source.set_spec("m", {"version_policy": "all"})
        self.bus = EventBus()
        self.records: list[RequestRecord] = []
        self.bus.on_request(self.records.append)
        router = Router()
        router.set_policy("m", PrimaryWithShadow())
        self.book = ShadowBook()
        self.runner = ShadowRunner(self.harness.manager, self.bus, self.book, max_inflight)
        self.plane = DataPlane(
            self.harness.manager,
            self.bus,
            ServerMetadata("serval", "0", ()),
            router,
            shadows=self.runner,
        )

    def predictors(self, first: EchoPredictor, second: EchoPredictor) -> None:
        self.harness.loaders.predictors[("m", 1)] = first
        self.harness.loaders.predictors[("m", 2)] = second

    def shadow_records(self) -> list[RequestRecord]:
        return [r for r in self.records if r.role == "shadow"]


def test_shadow_answers_are_compared_and_never_returned() -> None:
    rig = Rig()
    rig.predictors(Scores(), Scores(shift=0.2))

    async def test(h: Harness) -> None:
        await h.manager.start()
        first = await rig.plane.infer(request(0.2, 0.9, 0.4))
        second = await rig.plane.infer(request(0.1))
        for response in (first, second):  # version 1's answers, untouched by the copies
            assert response.model_version == "1"
            assert [t.name for t in response.outputs] == ["scores", "label"]
        np.testing.assert_allclose(first.outputs[0].data[:, 0], [0.2, 0.9, 0.4])
        np.testing.assert_array_equal(first.outputs[1].data, [1, 0, 1])
        await wait_until(lambda: rig.book.of("m", 2).requests == 2)
        await rig.plane.close()

    rig.harness.run(test)
    stats = rig.plane.shadow_statistics("m")[2]
    # Request 1: the shadow's labels are [1, 0, 0] against [1, 0, 1] (disagree); request 2:
    # [1] against [1] (agree). Scores differ by 0.2 in one column of each row: 0.8 over 8.
    assert (stats.requests, stats.errors, stats.dropped) == (2, 0, 0)
    assert (stats.compared, stats.agreed) == (2, 1)
    assert stats.agreement == 0.5
    assert stats.mean_abs_diff == pytest.approx(0.1, rel=1e-6)
    shadows = rig.shadow_records()
    assert [(r.servable and r.servable.version, r.error) for r in shadows] == [(2, None)] * 2
    assert [r.request_id for r in shadows] == ["r1", "r1"]
    primaries = [r for r in rig.records if r.role == "primary"]
    assert [r.servable and r.servable.version for r in primaries] == [1, 1]


def test_a_raising_shadow_leaves_every_primary_answer_intact() -> None:
    rig = Rig()
    rig.predictors(EchoPredictor(), EchoPredictor(fail_with=ZeroDivisionError("shadow")))

    async def test(h: Harness) -> None:
        await h.manager.start()
        for value in range(5):
            response = await rig.plane.infer(request(float(value)))
            assert response.model_version == "1"
            np.testing.assert_array_equal(response.outputs[0].data, [value])
        await wait_until(lambda: rig.book.of("m", 2).requests == 5)
        await rig.plane.close()

    rig.harness.run(test)
    stats = rig.book.of("m", 2)
    assert (stats.requests, stats.errors, stats.compared) == (5, 5, 0)
    errors = [r.error for r in rig.shadow_records()]
    assert len(errors) == 5
    assert all(isinstance(e, ModelExecutionError) and "shadow" in str(e) for e in errors)


def test_hung_shadows_are_bounded_dropped_and_counted() -> None:
    rig = Rig(max_inflight=2)
    gate = threading.Event()
    rig.predictors(EchoPredictor(), EchoPredictor(gate=gate))

    async def test(h: Harness) -> None:
        await h.manager.start()
        try:
            for value in range(6):  # the primary answers while its copies hang
                response = await rig.plane.infer(request(float(value)))
                assert response.model_version == "1"
                np.testing.assert_array_equal(response.outputs[0].data, [value])
            assert rig.runner.inflight == 2
            assert rig.book.of("m", 2).dropped == 4
            assert rig.book.of("m", 2).requests == 0
        finally:
            gate.set()
        await wait_until(lambda: rig.book.of("m", 2).requests == 2)
        await rig.plane.close()

    rig.harness.run(test)
    stats = rig.book.of("m", 2)
    assert (stats.requests, stats.errors, stats.dropped, stats.compared) == (2, 0, 4, 0)
    assert stats.mean_abs_diff == 0.0  # the echo answers are the same


def test_close_cancels_hung_copies_and_releases_their_leases() -> None:
    rig = Rig()
    gate = threading.Event()
    rig.predictors(EchoPredictor(), EchoPredictor(gate=gate))

    async def test(h: Harness) -> None:
        await h.manager.start()
        try:
            await rig.plane.infer(request(1.0))
            await wait_until(lambda: rig.harness.loaders.predictors[("m", 2)].calls == 1)
            await asyncio.wait_for(rig.plane.close(), 5.0)
            assert rig.runner.inflight == 0
            assert all(w.inflight == 0 for w in h.manager.workload().values())
        finally:
            gate.set()

    rig.harness.run(test)
    stats = rig.book.of("m", 2)
    assert (stats.requests, stats.errors) == (0, 0)  # stopped, not failed
    (record,) = rig.shadow_records()
    assert record.error is not None


def test_a_lease_taken_before_decoding_keeps_its_shadows() -> None:
    # TF Serving V1 leases, decodes under the handle, then runs: the copy still goes out.
    rig = Rig()

    async def test(h: Harness) -> None:
        await h.manager.start()
        async with rig.plane.lease(InferenceRequest("m", [])) as handle:
            assert isinstance(handle, ShadowedHandle) and handle.shadows == (2,)
            response = await rig.plane.infer(request(3.0), handle=handle)
            assert response.model_version == "1"
        await wait_until(lambda: rig.book.of("m", 2).requests == 1)
        await rig.plane.close()
        assert all(w.inflight == 0 for w in h.manager.workload().values())

    rig.harness.run(test)


def test_a_failed_primary_sends_no_copy() -> None:
    rig = Rig()
    rig.predictors(EchoPredictor(fail_with=ValueError("primary")), EchoPredictor())

    async def test(h: Harness) -> None:
        await h.manager.start()
        with pytest.raises(ModelExecutionError, match="primary"):
            await rig.plane.infer(request(1.0))
        await rig.plane.close()

    rig.harness.run(test)
    assert rig.shadow_records() == []
    assert rig.book.statistics("m") == {}
