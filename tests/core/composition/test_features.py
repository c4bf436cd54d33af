"""The features layer: the input filled from the store's hashes, one round trip per request,
unknown entities and missing fields, values that are not numbers, append, a store that is
down, metadata, and model.yaml sections that do not fit the model."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from serval.core.composition.features import FeaturesServable
from serval.core.composition.layer_counters import LayerCounters
from serval.core.composition.plan import ServerLayerPlan
from serval.core.dataplane import DataPlane, ServerMetadata
from serval.core.errors import DependencyUnavailableError, InvalidInputError, ModelConfigError
from serval.core.events import EventBus
from serval.core.specs.features import FeaturesSpec
from serval.core.tensors.datatypes import DataType
from serval.core.types import (
    InferenceRequest,
    InferenceResponse,
    RequestedOutput,
    ServableId,
    ServableMetadata,
    Tensor,
    TensorSpec,
)
from serval.testing import EchoPredictor
from tests.core.fakes import Harness
from tests.core.lookup_fakes import FakeFeatureStore, FakeLookupStores

ID = ServableId("m", 3)
FIELDS = ["age", "income", "clicks"]
HASHES = {
    "user:ann": {"age": b"31", "income": b"5.2e4", "clicks": b"-1"},
    "user:bob": {"age": b"45", "income": b"61000", "clicks": b"7"},
    "user:cy": {"age": b"19", "income": b"0.5", "clicks": b"120"},
}


@dataclass
class RecordingServable:
    """A model with inputs ``x`` ([-1, 2], FP32) and ``into``; answers ``y`` and remembers each
    request it got."""

    into: TensorSpec = field(default_factory=lambda: TensorSpec("features", DataType.FP32, (-1, 3)))
    seen: list[InferenceRequest] = field(default_factory=list)

    @property
    def metadata(self) -> ServableMetadata:
        return ServableMetadata(
            platform="test",
            inputs=(TensorSpec("x", DataType.FP32, (-1, 2)), self.into),
            outputs=(TensorSpec("y", DataType.FP32, (-1,)),),
        )

    async def predict(self, request: InferenceRequest) -> InferenceResponse:
        self.seen.append(request)
        rows = request.inputs[0].data.shape[0]
        return InferenceResponse(request.model_name, [Tensor("y", DataType.FP32, np.zeros(rows))])

    def workload(self) -> int:
        return 0

    async def close(self) -> None:
        pass

    def got(self, name: str) -> Tensor:
        (tensor,) = [t for t in self.seen[-1].inputs if t.name == name]
        return tensor


def spec(**changes: Any) -> FeaturesSpec:
    section: dict[str, Any] = {
        "entity": "user_id",
        "key": "user:{user_id}",
        "fields": FIELDS,
        "into": "features",
    }
    section.update(changes)
    return FeaturesSpec.model_validate(section)


@dataclass
class Setup:
    layer: FeaturesServable
    inner: RecordingServable
    store: FakeFeatureStore
    counters: LayerCounters

    def predict(self, request: InferenceRequest) -> InferenceResponse:
        return asyncio.run(self.layer.predict(request))

    def count(self, outcome: str) -> int:
        return self.counters.get("features", "m", "", outcome)


def setup(
    section: FeaturesSpec | None = None,
    into: TensorSpec | None = None,
    hashes: dict[str, dict[str, bytes]] | None = None,
) -> Setup:
    inner = RecordingServable() if into is None else RecordingServable(into=into)
    store = FakeFeatureStore(hashes=dict(HASHES if hashes is None else hashes))
    counters = LayerCounters()
    layer = FeaturesServable(inner, section or spec(), store, ID, counters)
    return Setup(layer, inner, store, counters)


def request(users: Sequence[str | int], *extra: Tensor, **kwargs: Any) -> InferenceRequest:
    rows = len(users)
    if users and isinstance(users[0], int):
        entity = Tensor("user_id", DataType.INT64, np.array(users, np.int64))
    else:
        entity = Tensor(
            "user_id", DataType.BYTES, np.array([str(u).encode() for u in users], object)
        )
    x = Tensor("x", DataType.FP32, np.arange(rows * 2, dtype=np.float32).reshape(rows, 2))
    return InferenceRequest("m", [x, entity, *extra], **kwargs)


def test_the_input_is_filled_with_the_hash_values_and_the_entity_is_removed() -> None:
    s = setup()
    sent = request(["bob", "ann"], outputs=[RequestedOutput("y")])
    s.predict(sent)
    got = s.inner.seen[-1]
    assert [t.name for t in got.inputs] == ["x", "features"]
    features = s.inner.got("features")
    assert features.datatype is DataType.FP32
    assert features.data.dtype == np.float32
    np.testing.assert_array_equal(features.data, [[45, 61000, 7], [31, 52000, -1]])
    assert s.inner.got("x") is sent.inputs[0]  # kept as sent
    assert got.outputs == [RequestedOutput("y")]
    assert s.count("found") == 2


def test_many_rows_with_repeated_entities_are_one_round_trip_asking_each_key_once() -> None:
    s = setup()
    users = ["ann", "bob", "ann", "cy", "bob", "ann"] * 50
    s.predict(request(users))
    assert s.store.round_trips == 1
    assert s.store.keys_asked == ["user:ann", "user:bob", "user:cy"]
    expected = {u: [float(v) for v in HASHES[f"user:{u}"].values()] for u in ("ann", "bob", "cy")}
    np.testing.assert_array_equal(
        s.inner.got("features").data, np.array([expected[u] for u in users], np.float32)
    )
    assert s.count("found") == len(users)


def test_str_elements_of_a_bytes_entity_are_accepted() -> None:
    s = setup()
    entity = Tensor("user_id", DataType.BYTES, np.array(["cy", b"ann"], object))
    x = Tensor("x", DataType.FP32, np.zeros((2, 2), np.float32))
    s.predict(InferenceRequest("m", [entity, x]))
    np.testing.assert_array_equal(s.inner.got("features").data[:, 0], [19, 31])


def test_an_int64_entity_is_its_decimal_text() -> None:
    section = spec(entity={"name": "user_id", "datatype": "INT64"})
    s = setup(
        section,
        hashes={
            "user:7": {"age": b"1", "income": b"2", "clicks": b"3"},
            "user:-12": HASHES["user:ann"],
        },
    )
    assert s.layer.metadata.input("user_id") == TensorSpec("user_id", DataType.INT64, (-1,))
    s.predict(request([-12, 7, 7, -12]))
    assert s.store.round_trips == 1
    assert s.store.keys_asked == ["user:-12", "user:7"]  # in order of first appearance
    np.testing.assert_array_equal(
        s.inner.got("features").data,
        [[31, 52000, -1], [1, 2, 3], [1, 2, 3], [31, 52000, -1]],
    )


def test_an_unknown_entity_is_refused_naming_the_entity_and_its_key() -> None:
    s = setup()
    with pytest.raises(InvalidInputError) as raised:
        s.predict(request(["ann", "zed", "zed"]))
    message = str(raised.value)
    assert "'zed'" in message and "'user:zed'" in message and "'user_id'" in message
    assert s.inner.seen == []
    assert s.count("unknown") == 2
    assert s.count("found") == 0


def test_an_unknown_entity_gets_the_defaults() -> None:
    s = setup(spec(missing="default", defaults={"age": 40, "clicks": 1.5}))
    s.predict(request(["zed", "ann"]))
    np.testing.assert_array_equal(s.inner.got("features").data, [[40, 0, 1.5], [31, 52000, -1]])
    assert (s.count("defaulted"), s.count("found")) == (1, 1)


def test_a_missing_field_is_refused_or_defaulted() -> None:
    hashes = {"user:ann": {"age": b"31", "clicks": b"4"}}
    refusing = setup(hashes=hashes)
    with pytest.raises(InvalidInputError) as raised:
        refusing.predict(request(["ann"]))
    assert "'ann'" in str(raised.value) and "'income'" in str(raised.value)
    assert "'age'" not in str(raised.value)
    assert refusing.count("unknown") == 1

    defaulting = setup(spec(missing="default", defaults={"income": 9}), hashes=hashes)
    defaulting.predict(request(["ann"]))
    np.testing.assert_array_equal(defaulting.inner.got("features").data, [[31, 9, 4]])
    assert defaulting.count("defaulted") == 1


@pytest.mark.parametrize("value", [b"lots", b"", b"nan", b"1e400"])
def test_a_value_that_is_not_a_number_is_a_400_naming_entity_field_and_value(value: bytes) -> None:
    s = setup(hashes={**HASHES, "user:bob": {**HASHES["user:bob"], "income": value}})
    with pytest.raises(InvalidInputError) as raised:
        s.predict(request(["ann", "bob"]))
    message = str(raised.value)
    assert "'bob'" in message and "'income'" in message and repr(value) in message
    assert s.inner.seen == []


def test_an_integer_input_takes_whole_numbers_and_refuses_fractions() -> None:
    into = TensorSpec("features", DataType.INT32, (-1, 3))
    hashes = {
        "user:ann": {"age": b"31", "income": b"5.2e4", "clicks": b"-1"},
        "user:bob": {"age": b"45", "income": b"3.0", "clicks": b"7"},
    }
    s = setup(into=into, hashes=hashes)
    s.predict(request(["ann", "bob"]))
    features = s.inner.got("features")
    assert features.datatype is DataType.INT32 and features.data.dtype == np.int32
    np.testing.assert_array_equal(features.data, [[31, 52000, -1], [45, 3, 7]])

    fraction = setup(
        into=into, hashes={**hashes, "user:bob": {**hashes["user:bob"], "age": b"4.5"}}
    )
    with pytest.raises(InvalidInputError, match=r"'bob'.*'age'.*b'4\.5'.*not an integer"):
        fraction.predict(request(["bob"]))


def test_integers_beyond_float_precision_stay_exact_and_out_of_range_is_refused() -> None:
    big = 2**62 + 1
    into = TensorSpec("features", DataType.INT64, (-1, 3))
    hashes = {"user:ann": {"age": str(big).encode(), "income": b"1", "clicks": b"2"}}
    s = setup(into=into, hashes=hashes)
    s.predict(request(["ann"]))
    assert int(s.inner.got("features").data[0, 0]) == big

    small = TensorSpec("features", DataType.UINT8, (-1, 3))
    for value in (b"256", b"-1"):
        out = setup(into=small, hashes={"user:ann": {**hashes["user:ann"], "age": value}})
        with pytest.raises(InvalidInputError, match="out of range for UINT8"):
            out.predict(request(["ann"]))


def test_append_places_the_looked_up_columns_after_the_requests_own() -> None:
    into = TensorSpec("features", DataType.FP64, (-1, 5))
    s = setup(spec(append=True), into=into)
    assert s.layer.metadata.input("features") == TensorSpec("features", DataType.FP64, (-1, 2))
    own = Tensor("features", DataType.FP64, np.array([[0.5, 1.5], [2.5, 3.5]]))
    s.predict(request(["cy", "ann"], own))
    features = s.inner.got("features")
    assert features.data.dtype == np.float64
    np.testing.assert_array_equal(
        features.data, [[0.5, 1.5, 19, 0.5, 120], [2.5, 3.5, 31, 52000, -1]]
    )
    assert [t.name for t in s.inner.seen[-1].inputs] == ["x", "features"]

    with pytest.raises(InvalidInputError, match="missing input 'features'"):
        s.predict(request(["ann"]))
    wrong = Tensor("features", DataType.FP64, np.zeros((1, 3)))
    with pytest.raises(InvalidInputError, match=r"expected shape \[1, 2\]"):
        s.predict(request(["ann"], wrong))


def test_without_append_a_request_may_not_send_the_filled_input() -> None:
    s = setup()
    own = Tensor("features", DataType.FP32, np.zeros((1, 3), np.float32))
    with pytest.raises(InvalidInputError, match="filled from the feature store"):
        s.predict(request(["ann"], own))


def test_the_entity_must_be_sent_one_per_row() -> None:
    s = setup()
    x = Tensor("x", DataType.FP32, np.zeros((2, 2), np.float32))
    with pytest.raises(InvalidInputError, match="missing input 'user_id'"):
        s.predict(InferenceRequest("m", [x]))
    three = Tensor("user_id", DataType.BYTES, np.array([b"ann", b"bob", b"cy"], object))
    with pytest.raises(InvalidInputError, match="'x' has 2 rows, but 'user_id' has 3"):
        s.predict(InferenceRequest("m", [x, three]))
    square = Tensor("user_id", DataType.BYTES, np.array([[b"ann"], [b"bob"]], object))
    with pytest.raises(InvalidInputError, match=r"one entity per row \(shape \[-1\]\)"):
        s.predict(InferenceRequest("m", [x, square]))
    assert s.store.round_trips == 0


def test_a_store_that_is_down_is_a_503_with_retry_after_and_counted() -> None:
    s = setup()
    s.store.down = True
    with pytest.raises(DependencyUnavailableError) as raised:
        s.predict(request(["ann"]))
    assert raised.value.retry_after_s == 1
    assert "'m'" in str(raised.value) and "feature store is unreachable" in str(raised.value)
    assert "the fake feature store is down" in str(raised.value)
    assert s.count("unavailable") == 1
    assert s.inner.seen == []

    s.store.down = False  # recovers without anything else
    s.predict(request(["ann"]))
    assert s.count("found") == 1


def test_an_empty_request_asks_the_store_nothing() -> None:
    s = setup()
    s.predict(request([]))
    assert s.store.round_trips == 0
    assert s.inner.got("features").data.shape == (0, 3)


def test_metadata_has_the_entity_instead_of_the_filled_input() -> None:
    s = setup()
    metadata = s.layer.metadata
    assert [t.name for t in metadata.inputs] == ["x", "user_id"]
    assert metadata.input("user_id") == TensorSpec("user_id", DataType.BYTES, (-1,))
    assert metadata.input("features") is None
    assert metadata.outputs == s.inner.metadata.outputs
    assert s.layer.metadata is metadata  # computed once


def test_a_variable_width_input_takes_any_number_of_fields() -> None:
    s = setup(into=TensorSpec("features", DataType.FP32, (-1, -1)))
    s.predict(request(["ann"]))
    assert s.inner.got("features").data.shape == (1, 3)


@pytest.mark.parametrize(
    ("section", "into", "field_named", "says"),
    [
        (spec(into="feats"), None, "features.into", "'feats' is not an input"),
        (spec(), TensorSpec("features", DataType.FP32, (-1, 4)), "features.fields", "4 columns"),
        (spec(), TensorSpec("features", DataType.BYTES, (-1, 3)), "features.into", "BYTES"),
        (spec(), TensorSpec("features", DataType.BOOL, (-1, 3)), "features.into", "BOOL"),
        (spec(), TensorSpec("features", DataType.FP32, (-1,)), "features.into", "shape [-1]"),
        (spec(append=True), None, "features.append", "no room"),
        (spec(entity="x", key="u:{x}"), None, "features.entity", "'x' is already an input"),
        (
            spec(missing="default", defaults={"age": 2.5}),
            TensorSpec("features", DataType.INT64, (-1, 3)),
            "features.defaults",
            "not an integer",
        ),
    ],
)
def test_a_section_that_does_not_fit_the_model_is_a_config_error(
    section: FeaturesSpec, into: TensorSpec | None, field_named: str, says: str
) -> None:
    with pytest.raises(ModelConfigError) as raised:
        setup(section, into=into)
    assert str(raised.value).startswith(field_named + ":")
    assert says in str(raised.value)


@dataclass
class SummingPredictor(EchoPredictor):
    """A model of one input ``features`` ([-1, 3]) answering each row's sum as ``y``."""

    @property
    def metadata(self) -> ServableMetadata:
        return ServableMetadata(
            platform="fake",
            inputs=(TensorSpec("features", DataType.FP32, (-1, 3)),),
            outputs=(TensorSpec("y", DataType.FP32, (-1,)),),
        )

    def predict(self, request: InferenceRequest) -> InferenceResponse:
        self.calls += 1
        (features,) = request.inputs
        return InferenceResponse(
            request.model_name, [Tensor("y", DataType.FP32, features.data.sum(axis=1))]
        )


def test_through_the_data_plane_with_the_entity_also_a_key() -> None:
    stores = FakeLookupStores(features=FakeFeatureStore(hashes=dict(HASHES)))
    counters = LayerCounters()
    h = Harness(ServerLayerPlan(stores, counters))
    h.source.add_version("m", 1)
    section = {"entity": "user_id", "key": "user:{user_id}", "fields": FIELDS, "into": "features"}
    h.source.set_spec("m", {"keys": ["user_id"], "features": section})
    h.loaders.predictors[("m", 1)] = SummingPredictor()
    plane = DataPlane(h.manager, EventBus(), ServerMetadata("serval", "0", ()))
    users = Tensor("user_id", DataType.BYTES, np.array([b"cy", b"ann"], object))

    async def test(h: Harness) -> None:
        await h.manager.start()
        metadata = plane.model_metadata("m")
        assert [t.name for t in metadata.inputs] == ["user_id"]
        response = await plane.infer(InferenceRequest("m", [users]))
        assert [t.name for t in response.outputs] == ["user_id", "y"]
        assert response.outputs[0].data.tolist() == [b"cy", b"ann"]
        np.testing.assert_allclose(response.outputs[1].data, [139.5, 52030])
        with pytest.raises(InvalidInputError, match="unknown entity 'zed'"):
            zed = Tensor("user_id", DataType.BYTES, np.array([b"zed"], object))
            await plane.infer(InferenceRequest("m", [zed]))

    h.run(test)
    assert stores.features.round_trips == 2
    assert counters.get("features", "m", "", "found") == 2
    assert counters.get("features", "m", "", "unknown") == 1
