"""The precomputed layer: rows with a (fresh, usable) answer come from the store, the others
from one call of the model on only those rows (or a 404); ``source`` per row; counts;
metadata and config errors."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from serval.core.composition.keys import KeyedServable
from serval.core.composition.layer_counters import LayerCounters
from serval.core.composition.precomputed import PrecomputedServable
from serval.core.composition.stores import PrecomputedAnswer
from serval.core.errors import (
    AnswerNotFoundError,
    DependencyUnavailableError,
    ErrorCode,
    InvalidInputError,
    ModelConfigError,
)
from serval.core.specs.keys import KeySpec
from serval.core.specs.precomputed import PrecomputedSpec
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
from tests.core.lookup_fakes import FakePrecomputedReader

ID = ServableId("recs", 4)
FP32 = DataType.FP32


OUTPUTS = (TensorSpec("y", FP32, (-1, 2)), TensorSpec("label", DataType.BYTES, (-1,)))


@dataclass
class RowModel:
    """y = 10 * x (FP32) and label = b"m<x0>" (BYTES); records each call's inputs and
    requested outputs."""

    inputs: tuple[TensorSpec, ...] = (TensorSpec("x", FP32, (-1, 2)),)
    outputs: tuple[TensorSpec, ...] = OUTPUTS
    calls: list[dict[str, np.ndarray[Any, Any]]] = field(default_factory=list)
    asked: list[list[str] | None] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.metadata = ServableMetadata("python", self.inputs, self.outputs)

    async def predict(self, request: InferenceRequest) -> InferenceResponse:
        self.calls.append({t.name: t.data for t in request.inputs})
        self.asked.append(None if request.outputs is None else [o.name for o in request.outputs])
        x = next(t.data for t in request.inputs if t.name == "x")
        label = np.array([f"m{v:g}".encode() for v in x[:, 0]], dtype=np.object_)
        outputs = [
            Tensor("y", FP32, (x * 10).astype(np.float32)),
            Tensor("label", DataType.BYTES, label),
        ]
        if request.outputs is not None:
            names = [o.name for o in request.outputs]
            outputs = [t for t in outputs if t.name in names]
        return InferenceResponse(request.model_name, outputs, parameters={"from": "inner"})

    def workload(self) -> int:
        return 0

    async def close(self) -> None:
        pass


def layer(
    inner: RowModel | None = None, reader: FakePrecomputedReader | None = None, **spec: Any
) -> tuple[PrecomputedServable, RowModel, FakePrecomputedReader, LayerCounters]:
    model = inner or RowModel()
    reader = reader or FakePrecomputedReader()
    counters = LayerCounters()
    spec.setdefault("store", "redis")
    spec.setdefault("key_input", "user_id")
    servable = PrecomputedServable(
        model, PrecomputedSpec.model_validate(spec), reader, ID, counters
    )
    return servable, model, reader, counters


def answer(
    y: Sequence[float], label: bytes = b"p", version: int = 3, written_at: float | None = None
) -> PrecomputedAnswer:
    outputs = {"y": np.array(y, dtype=np.float32), "label": np.array(label, dtype=np.object_)}
    return PrecomputedAnswer("recs", version, outputs, written_at)


def request(
    users: Sequence[object],
    x: Sequence[Sequence[float]] | None = None,
    outputs: Sequence[str] | None = None,
    datatype: DataType = DataType.BYTES,
) -> InferenceRequest:
    if datatype is DataType.BYTES:
        keys = np.array([str(u).encode() for u in users], dtype=np.object_)
    else:
        keys = np.array(users, dtype=datatype.numpy_dtype)
    x = x if x is not None else [[float(i), float(i)] for i in range(len(users))]
    return InferenceRequest(
        "recs",
        [Tensor("x", FP32, np.array(x, dtype=np.float32)), Tensor("user_id", datatype, keys)],
        outputs=None if outputs is None else [RequestedOutput(n) for n in outputs],
    )


def run(servable: PrecomputedServable, req: InferenceRequest) -> InferenceResponse:
    return asyncio.run(servable.predict(req))


def out(response: InferenceResponse, name: str) -> np.ndarray[Any, Any]:
    return next(t.data for t in response.outputs if t.name == name)


def count(counters: LayerCounters, outcome: str) -> int:
    return counters.get("precomputed", "recs", "", outcome)


def test_every_row_precomputed_never_runs_the_model() -> None:
    servable, model, reader, counters = layer()
    reader.answers[("recs", "a")] = answer([1, 2], b"pa")
    reader.answers[("recs", "b")] = answer([3, 4], b"pb", version=2)
    response = run(servable, request(["a", "b", "a"]))
    assert model.calls == []
    assert reader.round_trips == 1
    assert [t.name for t in response.outputs] == ["y", "label", "source"]
    np.testing.assert_array_equal(out(response, "y"), [[1, 2], [3, 4], [1, 2]])
    assert out(response, "y").dtype == np.float32
    assert out(response, "label").tolist() == [b"pa", b"pb", b"pa"]
    assert out(response, "source").tolist() == [b"precomputed"] * 3
    assert response.parameters["precomputed_versions"] == "2,3"
    assert response.timings.executions == 0
    assert count(counters, "precomputed") == 3 and count(counters, "model") == 0


def test_mixed_rows_keep_their_order_and_the_model_gets_only_the_missing_rows() -> None:
    servable, model, reader, counters = layer()
    reader.answers[("recs", "b")] = answer([7, 7], b"pb")
    reader.answers[("recs", "d")] = answer([9, 9], b"pd")
    x = [[1, 1], [2, 2], [3, 3], [4, 4]]
    response = run(servable, request(["a", "b", "c", "d"], x))
    assert len(model.calls) == 1
    assert set(model.calls[0]) == {"x"}  # the key is not an input of the model
    np.testing.assert_array_equal(model.calls[0]["x"], [[1, 1], [3, 3]])
    np.testing.assert_array_equal(out(response, "y"), [[10, 10], [7, 7], [30, 30], [9, 9]])
    assert out(response, "label").tolist() == [b"m1", b"pb", b"m3", b"pd"]
    assert out(response, "source").tolist() == [b"model", b"precomputed", b"model", b"precomputed"]
    assert response.parameters == {"from": "inner", "precomputed_versions": "3"}
    assert response.timings.executions == 1
    assert count(counters, "precomputed") == 2 and count(counters, "model") == 2


def test_no_answer_at_all_runs_the_model_on_every_row() -> None:
    servable, model, _, counters = layer()
    response = run(servable, request(["a", "b"]))
    assert len(model.calls) == 1 and len(model.calls[0]["x"]) == 2
    assert out(response, "source").tolist() == [b"model", b"model"]
    assert "precomputed_versions" not in response.parameters
    assert count(counters, "model") == 2


def test_fallback_error_is_a_404_naming_the_keys() -> None:
    servable, model, reader, counters = layer(fallback="error")
    reader.answers[("recs", "b")] = answer([1, 1])
    with pytest.raises(AnswerNotFoundError, match=r"keys 'a', 'c'") as raised:
        run(servable, request(["a", "b", "c", "a"]))
    assert raised.value.code is ErrorCode.NOT_FOUND
    assert model.calls == []
    assert count(counters, "missing") == 3


def test_fallback_error_names_the_first_few_keys_and_how_many_more() -> None:
    servable, _, _, _ = layer(fallback="error")
    with pytest.raises(AnswerNotFoundError, match=r"'u4' \(and 3 more\)"):
        run(servable, request([f"u{i}" for i in range(8)]))


def test_fallback_error_serves_when_every_row_has_an_answer() -> None:
    servable, model, reader, _ = layer(fallback="error")
    reader.answers[("recs", "a")] = answer([1, 1])
    response = run(servable, request(["a"]))
    assert out(response, "source").tolist() == [b"precomputed"] and model.calls == []


def test_answers_older_than_max_age_are_stale_and_go_to_the_model() -> None:
    servable, _, reader, counters = layer(max_age_s=60)
    now = time.time()
    reader.answers[("recs", "fresh")] = answer([1, 1], written_at=now - 10)
    reader.answers[("recs", "old")] = answer([2, 2], written_at=now - 600)
    reader.answers[("recs", "undated")] = answer([3, 3], written_at=None)
    response = run(servable, request(["fresh", "old", "undated"], [[5, 5], [6, 6], [7, 7]]))
    assert out(response, "source").tolist() == [b"precomputed", b"model", b"model"]
    np.testing.assert_array_equal(out(response, "y"), [[1, 1], [60, 60], [70, 70]])
    assert count(counters, "stale") == 2 and count(counters, "model") == 2


def test_a_store_that_does_not_answer_sends_every_row_to_the_model() -> None:
    servable, model, reader, counters = layer()
    reader.answers[("recs", "a")] = answer([1, 1])
    reader.down = True
    response = run(servable, request(["a", "b"]))
    assert out(response, "source").tolist() == [b"model", b"model"]
    assert len(model.calls) == 1
    assert count(counters, "unavailable") == 1 and count(counters, "model") == 2


def test_a_store_that_does_not_answer_is_a_503_with_fallback_error() -> None:
    servable, model, reader, counters = layer(fallback="error")
    reader.down = True
    with pytest.raises(DependencyUnavailableError) as raised:
        run(servable, request(["a"]))
    assert raised.value.retry_after_s == 1
    assert model.calls == [] and count(counters, "unavailable") == 1


def test_requested_outputs_keep_their_order_and_leave_source_out() -> None:
    servable, model, reader, _ = layer()
    reader.answers[("recs", "a")] = answer([1, 1], b"pa")
    response = run(servable, request(["a", "b"], outputs=["label", "y"]))
    assert [t.name for t in response.outputs] == ["label", "y"]
    assert model.asked == [["label", "y"]]
    response = run(servable, request(["a", "b"], outputs=["source", "label"]))
    assert [t.name for t in response.outputs] == ["source", "label"]
    assert model.asked[-1] == ["label"]  # never source
    assert out(response, "label").tolist() == [b"pa", b"m1"]


def test_only_source_asked_for() -> None:
    servable, model, reader, _ = layer()
    # An answer without outputs serves a request that asks for none of the model's.
    reader.answers[("recs", "a")] = PrecomputedAnswer("recs", 3, {})
    response = run(servable, request(["a", "b"], outputs=["source"]))
    assert [t.name for t in response.outputs] == ["source"]
    assert out(response, "source").tolist() == [b"precomputed", b"model"]
    assert model.asked == [None]


def test_an_answer_lacking_a_requested_output_goes_to_the_model() -> None:
    servable, model, reader, _ = layer()
    reader.answers[("recs", "a")] = PrecomputedAnswer(
        "recs", 3, {"y": np.array([1, 1], np.float32)}
    )
    assert out(run(servable, request(["a"])), "source").tolist() == [b"model"]
    # ... but serves a request that asks only for what it has.
    response = run(servable, request(["a"], outputs=["y", "source"]))
    assert out(response, "source").tolist() == [b"precomputed"]
    np.testing.assert_array_equal(out(response, "y"), [[1, 1]])
    assert len(model.calls) == 1


@pytest.mark.parametrize(
    "outputs",
    [
        {"y": np.array([1, 1, 1], np.float32), "label": np.array(b"p", np.object_)},  # shape
        {"y": np.array([1.5, 2], np.float64), "label": np.array(7)},  # a number for BYTES
        {"y": np.array([b"1", b"2"], np.object_), "label": np.array(b"p", np.object_)},
    ],
)
def test_an_answer_that_does_not_fit_the_outputs_goes_to_the_model(
    outputs: dict[str, np.ndarray[Any, Any]],
) -> None:
    servable, _, reader, _ = layer()
    reader.answers[("recs", "a")] = PrecomputedAnswer("recs", 3, outputs)
    response = run(servable, request(["a"], [[2, 2]]))
    assert out(response, "source").tolist() == [b"model"]
    np.testing.assert_array_equal(out(response, "y"), [[20, 20]])


def test_answers_are_converted_to_the_outputs_datatypes() -> None:
    servable, _, reader, _ = layer()
    reader.answers[("recs", "a")] = PrecomputedAnswer(
        "recs",
        3,
        {"y": np.array([1.5, 2.5]), "label": np.array("text")},  # FP64, str
    )
    response = run(servable, request(["a", "b"]))
    assert out(response, "y").dtype == np.float32
    np.testing.assert_array_equal(out(response, "y"), [[1.5, 2.5], [10, 10]])
    assert out(response, "label").tolist() == [b"text", b"m1"]
    label = next(t for t in response.outputs if t.name == "label")
    assert label.datatype is DataType.BYTES


def test_a_shared_key_input_reaches_the_model() -> None:
    inputs = (TensorSpec("x", FP32, (-1, 2)), TensorSpec("user_id", DataType.BYTES, (-1,)))
    servable, model, reader, _ = layer(RowModel(inputs))
    reader.answers[("recs", "b")] = answer([1, 1])
    run(servable, request(["a", "b", "c"]))
    assert model.calls[0]["user_id"].tolist() == [b"a", b"c"]
    assert [s.name for s in servable.metadata.inputs] == ["x", "user_id"]


def test_two_key_inputs_are_joined_by_the_unit_separator() -> None:
    servable, model, reader, _ = layer(key_input=["region", {"name": "user", "datatype": "INT64"}])
    reader.answers[("recs", "eu\x1f7")] = answer([1, 1])
    req = InferenceRequest(
        "recs",
        [
            Tensor("x", FP32, np.zeros((2, 2), np.float32)),
            Tensor("region", DataType.BYTES, np.array([b"eu", b"us"], np.object_)),
            Tensor("user", DataType.INT64, np.array([7, 7], np.int64)),
        ],
    )
    response = run(servable, req)
    assert out(response, "source").tolist() == [b"precomputed", b"model"]
    assert set(model.calls[0]) == {"x"}


def test_int64_keys() -> None:
    servable, _, reader, _ = layer(key_input={"name": "user_id", "datatype": "INT64"})
    reader.answers[("recs", "42")] = answer([1, 1])
    response = run(servable, request([42, 43], datatype=DataType.INT64))
    assert out(response, "source").tolist() == [b"precomputed", b"model"]


def test_answers_are_read_under_the_batch_jobs_model_name() -> None:
    servable, _, reader, counters = layer(model="recs-batch")
    reader.answers[("recs-batch", "a")] = answer([1, 1])
    assert out(run(servable, request(["a"])), "source").tolist() == [b"precomputed"]
    assert count(counters, "precomputed") == 1  # counted under the serving model's name


def test_one_lookup_of_the_distinct_keys_per_request() -> None:
    keys_asked: list[list[str]] = []

    class Recording(FakePrecomputedReader):
        async def get_many(self, model: str, keys: Sequence[str]) -> list[PrecomputedAnswer | None]:
            keys_asked.append(list(keys))
            return await super().get_many(model, keys)

    servable, _, _, _ = layer(reader=Recording())
    run(servable, request(["a", "b", "a", "a"]))
    assert keys_asked == [["a", "b"]]


def test_variable_row_shapes_that_differ_go_to_the_model() -> None:
    outputs = (TensorSpec("y", FP32, (-1, -1)), TensorSpec("label", DataType.BYTES, (-1,)))
    servable, _, reader, _ = layer(RowModel(outputs=outputs))
    reader.answers[("recs", "a")] = answer([1, 1])
    reader.answers[("recs", "b")] = answer([1, 1, 1])
    reader.answers[("recs", "c")] = answer([2, 2])
    response = run(servable, request(["a", "b", "c"]))
    assert out(response, "source").tolist() == [b"precomputed", b"model", b"precomputed"]
    np.testing.assert_array_equal(out(response, "y"), [[1, 1], [10, 10], [2, 2]])


def test_metadata_adds_the_key_inputs_and_source() -> None:
    servable, _, _, _ = layer()
    metadata = servable.metadata
    assert [(s.name, s.datatype, s.shape) for s in metadata.inputs] == [
        ("x", FP32, (-1, 2)),
        ("user_id", DataType.BYTES, (-1,)),
    ]
    assert [(s.name, s.datatype, s.shape) for s in metadata.outputs] == [
        ("y", FP32, (-1, 2)),
        ("label", DataType.BYTES, (-1,)),
        ("source", DataType.BYTES, (-1,)),
    ]
    assert servable.metadata is metadata  # computed once


def test_a_shared_key_of_another_datatype_is_a_config_error() -> None:
    inputs = (TensorSpec("x", FP32, (-1, 2)), TensorSpec("user_id", DataType.INT64, (-1,)))
    with pytest.raises(ModelConfigError, match=r"precomputed\.key_input.*'user_id'.*INT64"):
        layer(RowModel(inputs))


def test_a_model_output_named_source_is_a_config_error() -> None:
    outputs = (*OUTPUTS, TensorSpec("source", FP32, (-1,)))
    with pytest.raises(ModelConfigError, match=r"precomputed: .*'source'.*rename"):
        layer(RowModel(outputs=outputs))


def test_a_request_without_the_key_input_is_refused() -> None:
    servable, _, _, _ = layer()
    req = InferenceRequest("recs", [Tensor("x", FP32, np.zeros((1, 2), np.float32))])
    with pytest.raises(InvalidInputError, match="'user_id'"):
        run(servable, req)


def test_a_key_that_is_not_one_value_per_row_is_refused() -> None:
    servable, _, _, _ = layer()
    req = request(["a", "b"])
    req.inputs[1] = Tensor("user_id", DataType.BYTES, np.array([[b"a", b"b"]], np.object_))
    with pytest.raises(InvalidInputError, match="'user_id'"):
        run(servable, req)


def test_inputs_whose_rows_differ_from_the_keys_are_refused() -> None:
    servable, model, reader, _ = layer()
    reader.answers[("recs", "a")] = answer([1, 1])
    with pytest.raises(InvalidInputError, match="'x'"):
        run(servable, request(["a", "b"], [[1, 1], [2, 2], [3, 3]]))
    assert model.calls == []


def test_a_request_without_rows_asks_the_model() -> None:
    servable, model, reader, _ = layer()
    response = run(servable, request([], np.zeros((0, 2))))
    assert reader.round_trips == 0 and len(model.calls) == 1
    assert out(response, "y").shape == (0, 2) and out(response, "source").shape == (0,)


def test_why_an_answer_cannot_serve_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    servable, _, reader, _ = layer()
    reader.answers[("recs", "a")] = PrecomputedAnswer("recs", 3, {})
    reader.answers[("recs", "b")] = PrecomputedAnswer("recs", 3, {})
    with caplog.at_level("WARNING", logger="serval.core.composition.precomputed"):
        run(servable, request(["a", "b"]))
        run(servable, request(["a"]))
    assert [r.getMessage().count("lacks output 'y'") for r in caplog.records] == [1]


def test_inside_the_keys_layer_a_key_can_be_the_precomputed_key() -> None:
    servable, model, reader, _ = layer()
    reader.answers[("recs", "b")] = answer([5, 5])
    keyed = KeyedServable(servable, [KeySpec(name="user_id")], shared={"user_id"})
    assert [s.name for s in keyed.metadata.inputs] == ["x", "user_id"]
    response = asyncio.run(keyed.predict(request(["a", "b"])))
    assert [t.name for t in response.outputs] == ["user_id", "y", "label", "source"]
    assert out(response, "user_id").tolist() == [b"a", b"b"]
    assert out(response, "source").tolist() == [b"model", b"precomputed"]
    assert set(model.calls[0]) == {"x"}
