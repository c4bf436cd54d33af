"""validate_request: a request against what the servable declares; each error names the
tensor and the reason."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from serval.core.errors import InvalidInputError
from serval.core.tensors.datatypes import DataType
from serval.core.tensors.signatures import signature_metadata
from serval.core.tensors.validation import validate_request
from serval.core.types import (
    InferenceRequest,
    RequestedOutput,
    ServableMetadata,
    SignatureSpec,
    Tensor,
    TensorSpec,
)

FP32, INT64, BYTES = DataType.FP32, DataType.INT64, DataType.BYTES
METADATA = ServableMetadata(
    "fake",
    inputs=(TensorSpec("x", FP32, (-1, 3)), TensorSpec("n", INT64, (-1,))),
    outputs=(TensorSpec("y", FP32, (-1, 1)), TensorSpec("label", INT64, (-1,))),
)


def x(rows: int = 2, width: int = 3, datatype: DataType = FP32) -> Tensor:
    return Tensor("x", datatype, np.zeros((rows, width), datatype.numpy_dtype))


def n(rows: int = 2) -> Tensor:
    return Tensor("n", INT64, np.zeros(rows, np.int64))


def request(*inputs: Tensor, outputs: list[str] | None = None) -> InferenceRequest:
    requested = None if outputs is None else [RequestedOutput(name) for name in outputs]
    return InferenceRequest("m", list(inputs), outputs=requested)


def test_a_request_that_fits_passes_in_any_input_order() -> None:
    validate_request(request(x(), n()), METADATA)
    validate_request(request(n(5), x(5)), METADATA)
    validate_request(request(x(1), n(1), outputs=["label"]), METADATA)
    validate_request(request(x(1), n(1), outputs=[]), METADATA)


def test_variable_dimensions_take_any_size_fixed_ones_only_theirs() -> None:
    validate_request(request(x(rows=1000), n(1000)), METADATA)
    with pytest.raises(InvalidInputError) as caught:
        validate_request(request(x(width=4), n()), METADATA)
    assert caught.value.message == (
        "input 'x': expected shape [-1, 3] (-1 = any size), received [2, 4]"
    )


def test_a_different_rank_is_refused() -> None:
    flat = Tensor("x", FP32, np.zeros(3, np.float32))
    with pytest.raises(InvalidInputError, match=r"input 'x': expected shape \[-1, 3\].*\[3\]"):
        validate_request(request(flat, n()), METADATA)


def test_an_unknown_input_names_the_expected_ones() -> None:
    stray = Tensor("z", FP32, np.zeros((2, 3), np.float32))
    with pytest.raises(InvalidInputError) as caught:
        validate_request(request(x(), n(), stray), METADATA)
    assert caught.value.message == "unknown input 'z' for model 'm'; expected inputs: x, n"


def test_an_input_given_twice_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="input 'x' is given more than once"):
        validate_request(request(x(), x()), METADATA)


def test_a_wrong_datatype_names_both() -> None:
    with pytest.raises(InvalidInputError) as caught:
        validate_request(request(x(datatype=DataType.FP64), n()), METADATA)
    assert caught.value.message == "input 'x': expected datatype FP32, received FP64"


@pytest.mark.parametrize(
    ("inputs", "missing"),
    [((), "'x', 'n'"), (("x",), "'n'"), (("n",), "'x'")],
)
def test_missing_inputs_are_all_named(inputs: tuple[str, ...], missing: str) -> None:
    tensors = [{"x": x(), "n": n()}[name] for name in inputs]
    with pytest.raises(InvalidInputError) as caught:
        validate_request(request(*tensors), METADATA)
    assert caught.value.message == f"missing input(s) {missing} for model 'm'"


def test_an_unknown_output_names_the_expected_ones() -> None:
    with pytest.raises(InvalidInputError) as caught:
        validate_request(request(x(), n(), outputs=["y", "proba"]), METADATA)
    assert (
        caught.value.message == "unknown output 'proba' for model 'm'; expected outputs: y, label"
    )


def test_the_first_problem_is_reported() -> None:
    # An unknown input comes before the datatype of a later one.
    stray = Tensor("z", FP32, np.zeros(1, np.float32))
    with pytest.raises(InvalidInputError, match="unknown input 'z'"):
        validate_request(request(stray, x(datatype=DataType.FP64)), METADATA)


def test_a_model_without_inputs_takes_an_empty_request() -> None:
    empty = ServableMetadata("fake", inputs=(), outputs=(TensorSpec("y", FP32, (1,)),))
    validate_request(request(), empty)
    with pytest.raises(InvalidInputError, match=r"expected inputs: $"):
        validate_request(request(x()), empty)


def test_bytes_inputs_are_checked_like_the_others() -> None:
    text = ServableMetadata("fake", inputs=(TensorSpec("s", DataType.BYTES, (-1,)),), outputs=())
    strings = np.array([b"a", b"b"], dtype=np.object_)
    validate_request(request(Tensor("s", DataType.BYTES, strings)), text)
    with pytest.raises(InvalidInputError, match="expected datatype BYTES, received FP32"):
        validate_request(request(Tensor("s", FP32, np.zeros(2, np.float32))), text)


# A SavedModel-like servable whose signatures take different inputs.
SCORES = (TensorSpec("scores", FP32, (-1, 3)),)
SIGNED = ServableMetadata(
    "fake",
    inputs=(TensorSpec("x", FP32, (-1, 3)),),
    outputs=SCORES,
    signatures=("serving_default", "length"),
    signature_specs=(
        SignatureSpec("serving_default", (TensorSpec("x", FP32, (-1, 3)),), SCORES),
        SignatureSpec(
            "length", (TensorSpec("text", BYTES, (-1,)),), (TensorSpec("n", INT64, (-1,)),)
        ),
    ),
)


def text() -> Tensor:
    return Tensor("text", BYTES, np.array([b"a", b"bc"], dtype=np.object_))


def test_a_request_is_checked_against_the_signature_it_names() -> None:
    named = request(text(), outputs=["n"])
    named.parameters = {"signature": "length"}
    validate_request(named, SIGNED)
    assert signature_metadata(SIGNED, named.parameters).inputs[0].name == "text"
    with pytest.raises(InvalidInputError, match=r"unknown input 'text'.*expected inputs: x"):
        validate_request(request(text()), SIGNED)  # the default takes x
    wrong = request(x(), outputs=["scores"])
    wrong.parameters = {"signature": "length"}
    with pytest.raises(InvalidInputError, match=r"unknown input 'x'.*expected inputs: text"):
        validate_request(wrong, SIGNED)


def test_an_unknown_signature_lists_the_signatures() -> None:
    with pytest.raises(
        InvalidInputError, match=r"unknown signature 'nope'.*serving_default, length"
    ):
        signature_metadata(SIGNED, {"signature": "nope"})


def test_without_a_default_a_request_must_name_a_signature() -> None:
    no_default = dataclasses.replace(
        SIGNED,
        signatures=("length", "scores"),
        requires_signature=True,
        signature_specs=(
            dataclasses.replace(SIGNED.signature_specs[1]),
            dataclasses.replace(SIGNED.signature_specs[0], name="scores"),
        ),
    )
    with pytest.raises(InvalidInputError, match=r"no default signature.*it has: length, scores"):
        validate_request(request(x()), no_default)
    named = request(x())
    named.parameters = {"signature": "scores"}
    validate_request(named, no_default)


def test_signatures_without_their_own_specs_share_the_metadata() -> None:
    shared = dataclasses.replace(METADATA, signatures=("predict", "other"))
    assert signature_metadata(shared, {"signature": "other"}) is shared
