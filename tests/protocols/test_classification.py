"""Triton's classification extension: top-k strings per row, labels from model.yaml."""

from __future__ import annotations

import numpy as np
import pytest

from serval.core.errors import InvalidInputError
from serval.core.model_spec import ModelSpec
from serval.core.tensors.datatypes import DataType
from serval.core.types import InferenceRequest, InferenceResponse, RequestedOutput, Tensor
from serval.protocols.oip.classification import classify, output_labels, top_classes
from serval.protocols.oip.parameters import take_class_counts


def test_rows_answer_their_top_k_with_labels() -> None:
    tensor = Tensor.from_numpy("p", np.array([[0.1, 0.7, 0.2], [0.5, 0.2, 0.3]], np.float32))
    top = top_classes(tensor, 2, ["cat", "dog", "bird"])
    assert top.datatype is DataType.BYTES
    assert top.data.tolist() == [
        [b"0.700000:1:dog", b"0.200000:2:bird"],
        [b"0.500000:0:cat", b"0.300000:2:bird"],
    ]


def test_one_dimension_answers_k_and_k_is_capped() -> None:
    tensor = Tensor.from_numpy("p", np.array([3, 9, 3], np.int64))
    top = top_classes(tensor, 5, ["a"])  # fewer labels than classes: the rest unlabelled
    assert top.data.tolist() == [b"9:1", b"3:0:a", b"3:2"]  # ties in index order


def test_scores_must_be_numbers() -> None:
    tensor = Tensor.from_numpy("p", np.array([b"x"], dtype=np.object_))
    with pytest.raises(InvalidInputError, match="numeric scores"):
        top_classes(tensor, 1)


def test_only_the_outputs_asked_for_are_classified() -> None:
    scores = np.array([[1.0, 2.0]], np.float32)
    response = InferenceResponse(
        "m", [Tensor.from_numpy("a", scores), Tensor.from_numpy("b", scores)]
    )
    classify(response, {"b": 1}, {"b": ["x", "y"]})
    assert response.outputs[0].datatype is DataType.FP32
    assert response.outputs[1].data.tolist() == [[b"2.000000:1:y"]]


def test_labels_come_from_model_yaml_outputs() -> None:
    outputs = [{"name": "p", "labels": ["no", "yes"]}, {"name": "q"}]
    spec = ModelSpec.parse({"outputs": outputs}, source="test")
    assert output_labels(spec) == {"p": ("no", "yes")}


def test_class_counts_are_taken_off_the_requested_outputs() -> None:
    request = InferenceRequest(
        "m",
        [],
        outputs=[
            RequestedOutput("a", {"classification": 3, "keep": True}),
            RequestedOutput("b", {"class_count": 2}),
            RequestedOutput("c", {"classification": 0}),
            RequestedOutput("d"),
        ],
    )
    assert take_class_counts(request) == {"a": 3, "b": 2}
    assert [dict(o.parameters) for o in request.outputs or []] == [{"keep": True}, {}, {}, {}]


def test_a_bad_class_count_is_a_client_error() -> None:
    request = InferenceRequest("m", [], outputs=[RequestedOutput("a", {"classification": -1})])
    with pytest.raises(InvalidInputError, match="classification"):
        take_class_counts(request)
