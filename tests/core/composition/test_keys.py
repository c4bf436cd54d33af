"""The keys layer: keys taken off the request, never seen by the model, returned row-aligned
and first; metadata; requested outputs; errors; batching inside the layer; the layer plan."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from serval.core.batching.servable import BatchingOptions, BatchingServable
from serval.core.composition.keys import (
    KeyedServable,
    keyed_metadata,
    keys_layer,
    split_keys,
)
from serval.core.composition.layer_counters import LayerCounters
from serval.core.composition.plan import ServerLayerPlan
from serval.core.dataplane import DataPlane, ServerMetadata
from serval.core.errors import InvalidInputError, ModelConfigError
from serval.core.events import EventBus
from serval.core.lifecycle.states import ServableId, ServableState
from serval.core.model_spec import ModelSpec
from serval.core.servable import Predictor, Servable, ThreadPoolServable
from serval.core.specs.keys import KeySpec
from serval.core.tensors.datatypes import DataType
from serval.core.types import (
    InferenceRequest,
    InferenceResponse,
    RequestedOutput,
    Tensor,
    TensorSpec,
)
from serval.testing import EchoPredictor
from tests.core.fakes import Harness, wait_until
from tests.core.lookup_fakes import NoLookupStores

layer_plan = ServerLayerPlan(NoLookupStores(), LayerCounters())

KEYED = {"keys": ["request_id", {"name": "customer", "datatype": "INT64"}]}


@dataclass
class SeeingPredictor(EchoPredictor):
    """An echo predictor that remembers the input names of every call it ran."""

    seen: list[list[str]] = field(default_factory=list)

    def predict(self, request: InferenceRequest) -> InferenceResponse:
        self.seen.append([tensor.name for tensor in request.inputs])
        return super().predict(request)


def keyed_request(
    x: Sequence[float],
    ids: Sequence[str],
    customers: Sequence[int],
    outputs: list[str] | None = None,
) -> InferenceRequest:
    return InferenceRequest(
        "m",
        [
            Tensor("request_id", DataType.BYTES, np.array([i.encode() for i in ids], object)),
            Tensor("x", DataType.FP32, np.array(x, np.float32)),
            Tensor("customer", DataType.INT64, np.array(customers, np.int64)),
        ],
        outputs=None if outputs is None else [RequestedOutput(name) for name in outputs],
    )


def harness(spec: dict[str, Any] = KEYED, **predictor: Any) -> tuple[Harness, DataPlane]:
    h = Harness(layer_plan)
    h.source.add_version("m", 1)
    h.source.set_spec("m", spec)
    h.loaders.predictors[("m", 1)] = SeeingPredictor(**predictor)
    return h, DataPlane(h.manager, EventBus(), ServerMetadata("serval", "0", ()))


def names(response: InferenceResponse) -> list[str]:
    return [tensor.name for tensor in response.outputs]


def test_keys_come_back_first_and_untouched_and_the_model_never_sees_them() -> None:
    h, plane = harness()

    async def test(h: Harness) -> None:
        await h.manager.start()
        response = await plane.infer(keyed_request([1, 2, 3], ["a", "b", "c"], [7, 8, 9]))
        assert names(response) == ["request_id", "customer", "y"]
        request_id, customer, y = response.outputs
        assert request_id.datatype is DataType.BYTES
        assert request_id.data.tolist() == [b"a", b"b", b"c"]
        assert customer.datatype is DataType.INT64
        assert customer.data.tolist() == [7, 8, 9]
        assert y.data.tolist() == [1, 2, 3]
        assert h.loaders.predictors[("m", 1)].seen == [["x"]]  # type: ignore[attr-defined]

    h.run(test)


def test_metadata_shows_the_keys_as_inputs_and_outputs() -> None:
    h, plane = harness()

    async def test(h: Harness) -> None:
        await h.manager.start()
        metadata = plane.model_metadata("m")
        request_id = TensorSpec("request_id", DataType.BYTES, (-1,))
        customer = TensorSpec("customer", DataType.INT64, (-1,))
        assert metadata.inputs == (TensorSpec("x", DataType.FP32, (-1,)), request_id, customer)
        assert metadata.outputs == (TensorSpec("y", DataType.FP32, (-1,)), request_id, customer)

    h.run(test)


def test_requested_outputs_choose_keys_too() -> None:
    h, plane = harness()
    ids, customers = ["a", "b"], [1, 2]

    async def test(h: Harness) -> None:
        await h.manager.start()
        only_y = await plane.infer(keyed_request([1, 2], ids, customers, ["y"]))
        assert names(only_y) == ["y"]
        one_key = await plane.infer(keyed_request([1, 2], ids, customers, ["y", "customer"]))
        assert names(one_key) == ["customer", "y"]
        keys_only = await plane.infer(keyed_request([1, 2], ids, customers, ["request_id"]))
        assert names(keys_only) == ["request_id"]
        assert keys_only.outputs[0].data.tolist() == [b"a", b"b"]

    h.run(test)


def test_a_missing_key_is_refused_naming_it() -> None:
    h, plane = harness()
    request = keyed_request([1], ["a"], [1])
    request.inputs = [t for t in request.inputs if t.name != "customer"]

    async def test(h: Harness) -> None:
        await h.manager.start()
        # The data plane checks the request against the keyed metadata first...
        with pytest.raises(InvalidInputError, match=r"missing input.*'customer'"):
            await plane.infer(request)
        # ...and the layer checks it again for callers that come without the data plane.
        async with h.manager.lease("m") as handle:
            with pytest.raises(InvalidInputError, match=r"missing key input.*'customer'"):
                await handle.servable.predict(request)
        assert h.loaders.predictors[("m", 1)].calls == 0

    h.run(test)


def test_a_key_with_other_rows_than_the_request_is_refused_naming_it() -> None:
    h, plane = harness()

    async def test(h: Harness) -> None:
        await h.manager.start()
        with pytest.raises(
            InvalidInputError,
            match=r"key 'customer' has 2 rows, but input 'x' has 3: a key has one value per row",
        ):
            await plane.infer(keyed_request([1, 2, 3], ["a", "b", "c"], [1, 2]))
        assert h.loaders.predictors[("m", 1)].calls == 0

    h.run(test)


def test_a_key_named_like_an_input_or_output_is_a_load_error_naming_it() -> None:
    for clash, what in (("x", "an input"), ("y", "an output")):
        h, _ = harness({"keys": ["request_id", clash]})

        async def test(h: Harness, clash: str = clash, what: str = what) -> None:
            await h.manager.start()
            assert h.serving("m") == []
            (status,) = h.manager.statuses("m")
            assert status.state is ServableState.END
            assert status.error == (
                f"keys: key {clash!r} has the name of {what} of the model; a key is passed "
                f"around the model, so rename the key"
            )

        h.run(test)


def test_concurrent_requests_merged_into_one_batch_each_get_their_own_keys() -> None:
    gate = threading.Event()

    def batching(predictor: Predictor, spec: ModelSpec) -> Servable:
        return BatchingServable(predictor, BatchingOptions.from_spec(spec))

    h = Harness(layer_plan, base=batching)
    h.source.add_version("m", 1)
    h.source.set_spec("m", {**KEYED, "max_batch_size": 64})
    predictor = h.loaders.predictors[("m", 1)] = SeeingPredictor(gate=gate)
    plane = DataPlane(h.manager, EventBus(), ServerMetadata("serval", "0", ()))

    async def test(h: Harness) -> None:
        await h.manager.start()
        # The first request holds the instance; the next ones queue and merge behind it.
        first = asyncio.create_task(plane.infer(keyed_request([0], ["r0-0"], [0])))
        await wait_until(lambda: predictor.calls == 1)
        rows = [1, 2, 3, 1, 2]
        calls = [
            plane.infer(
                keyed_request(
                    [float(r)] * n,
                    [f"r{r}-{i}" for i in range(n)],
                    [100 * r + i for i in range(n)],
                )
            )
            for r, n in enumerate(rows, start=1)
        ]
        tasks = [asyncio.create_task(call) for call in calls]
        async with h.manager.lease("m") as handle:
            assert isinstance(handle.servable, KeyedServable)
            batching = handle.servable.inner
            assert isinstance(batching, BatchingServable)
            await wait_until(lambda: batching.waiting == len(rows))
        gate.set()
        await first
        for r, (n, response) in enumerate(
            zip(rows, await asyncio.gather(*tasks), strict=True), start=1
        ):
            request_id, customer, y = response.outputs
            assert request_id.data.tolist() == [f"r{r}-{i}".encode() for i in range(n)]
            assert customer.data.tolist() == [100 * r + i for i in range(n)]
            assert y.data.tolist() == [float(r)] * n
        assert predictor.calls == 2  # the five queued requests ran as one batch
        assert predictor.seen == [["x"], ["x"]]

    h.run(test)


def test_a_model_without_keys_gets_no_layer() -> None:
    h, _ = harness({})

    async def test(h: Harness) -> None:
        await h.manager.start()
        assert layer_plan(ModelSpec(), h.manager, ServableId("m", 1)) == []
        async with h.manager.lease("m") as handle:
            assert isinstance(handle.servable, ThreadPoolServable)  # the base, bare
        keyed = ModelSpec.parse({"keys": ["k"]}, source="m/model.yaml")
        assert layer_plan(keyed, h.manager, ServableId("m", 1)) == [keys_layer]

    h.run(test)


def test_split_keys_leaves_the_request_as_it_was() -> None:
    request = keyed_request([1, 2], ["a", "b"], [1, 2], outputs=["y", "request_id"])
    inner, taken = split_keys(request, ("request_id", "customer"))
    assert [t.name for t in inner.inputs] == ["x"]
    assert inner.outputs == [RequestedOutput("y")]
    assert [t.name for t in taken.tensors] == ["request_id"]  # customer was not asked for
    assert [t.name for t in request.inputs] == ["request_id", "x", "customer"]
    assert request.outputs is not None and len(request.outputs) == 2


def test_keyed_metadata_refuses_a_clash() -> None:
    metadata = EchoPredictor().metadata
    with pytest.raises(ModelConfigError, match="key 'x' has the name of an input"):
        keyed_metadata(metadata, (KeySpec(name="x"),))
