"""MLServer's content_type markers: requests mapped onto the model's inputs, responses marked."""

from __future__ import annotations

import numpy as np
import pytest

from serval.core.errors import InvalidInputError
from serval.core.tensors.content_types import (
    apply_content_types,
    mark_response,
    take_content_type,
)
from serval.core.tensors.datatypes import DataType
from serval.core.tensors.validation import validate_request
from serval.core.types import (
    InferenceRequest,
    InferenceResponse,
    ParameterValue,
    ServableMetadata,
    Tensor,
    TensorSpec,
)

TABLE = ServableMetadata(
    "test",
    (TensorSpec("input", DataType.FP32, (-1, 3), columns=("a", "b", "c")),),
    (TensorSpec("out", DataType.FP32, (-1,)),),
)
SKLEARN = ServableMetadata(
    "test",
    (TensorSpec("input", DataType.FP64, (-1, 2)),),
    (TensorSpec("predict", DataType.INT64, (-1,)),),
    parameters={"feature_names": "x,y"},
)
TEXT = ServableMetadata(
    "test",
    (TensorSpec("text", DataType.BYTES, (-1,)),),
    (TensorSpec("label", DataType.BYTES, (-1,)),),
)


def column(name: str, values: list[object], datatype: DataType, **params: str) -> Tensor:
    data = np.array(values, dtype=datatype.numpy_dtype).reshape(-1, 1)
    return Tensor(name, datatype, data, dict(params))


def marked(inputs: list[Tensor], **params: ParameterValue) -> InferenceRequest:
    request = InferenceRequest("m", inputs)
    parameters = dict(params)
    take_content_type(request, parameters)
    request.parameters = parameters
    return request


def test_pandas_columns_are_stacked_in_the_declared_order_and_converted() -> None:
    request = marked(
        [
            column("c", [5, 6], DataType.INT64),
            column("a", [1.5, 2.5], DataType.FP64),
            column("b", [True, False], DataType.BOOL),
        ],
        content_type="pd",
    )
    assert request.content_type == "pd"
    assert request.parameters == {}  # taken off: no batch is split by it
    apply_content_types(request, TABLE)
    validate_request(request, TABLE)
    (tensor,) = request.inputs
    assert tensor.name == "input"
    assert tensor.datatype is DataType.FP32
    np.testing.assert_array_equal(tensor.data, [[1.5, 1, 5], [2.5, 0, 6]])
    assert tensor.data.dtype == np.float32


def test_pandas_columns_use_the_feature_names_of_a_single_input_model() -> None:
    request = marked(
        [column("y", [2.0], DataType.FP64), column("x", [1.0], DataType.FP64)], content_type="pd"
    )
    apply_content_types(request, SKLEARN)
    np.testing.assert_array_equal(request.inputs[0].data, [[1.0, 2.0]])


def test_pandas_missing_and_unknown_columns_are_named() -> None:
    request = marked([column("a", [1.0], DataType.FP64)], content_type="pd")
    with pytest.raises(InvalidInputError, match=r"missing column\(s\) 'b', 'c' of input 'input'"):
        apply_content_types(request, TABLE)
    request = marked(
        [column("a", [1.0], DataType.FP64), column("zz", [1.0], DataType.FP64)], content_type="pd"
    )
    with pytest.raises(InvalidInputError, match=r"unknown column\(s\) 'zz'.*a, b, c"):
        apply_content_types(request, TABLE)


def test_pandas_unsafe_conversion_and_ragged_columns_are_refused() -> None:
    strings = column("x", [b"one"], DataType.BYTES, content_type="str")
    request = marked([strings, column("y", [1.0], DataType.FP64)], content_type="pd")
    with pytest.raises(
        InvalidInputError, match=r"column 'x': expected datatype FP64, received BYTES"
    ):
        apply_content_types(request, SKLEARN)
    request = marked(
        [column("x", [1.0, 2.0], DataType.FP64), column("y", [1.0], DataType.FP64)],
        content_type="pd",
    )
    with pytest.raises(InvalidInputError, match="column 'y' has 1 rows, but column 'x' has 2"):
        apply_content_types(request, SKLEARN)


def test_pandas_without_column_names_says_how_to_declare_them() -> None:
    bare = ServableMetadata("test", (TensorSpec("input", DataType.FP32, (-1, 2)),), ())
    request = marked([column("a", [1.0], DataType.FP64)], content_type="pd")
    with pytest.raises(InvalidInputError, match=r"inputs\[\]\.columns in model.yaml"):
        apply_content_types(request, bare)


def test_pandas_inputs_named_as_the_model_inputs_are_fitted_as_they_are() -> None:
    request = marked([column("text", [b"hi", b"yo"], DataType.BYTES)], content_type="pd")
    apply_content_types(request, TEXT)
    validate_request(request, TEXT)
    assert request.inputs[0].shape == (2,)


def test_string_codec_input_of_any_name_in_n_by_1_is_accepted() -> None:
    strings = column("input-1", [b"a", b"b"], DataType.BYTES, content_type="str")
    request = marked([strings], content_type="str")
    apply_content_types(request, TEXT)
    validate_request(request, TEXT)
    (tensor,) = request.inputs
    assert (tensor.name, tensor.shape) == ("text", (2,))
    assert list(tensor.data) == [b"a", b"b"]


def test_an_input_marker_alone_is_enough() -> None:
    request = marked([column("text", [b"a"], DataType.BYTES, content_type="str")])
    assert request.content_type == ""
    apply_content_types(request, TEXT)
    validate_request(request, TEXT)


def test_numpy_codec_fp64_converts_to_the_models_fp32() -> None:
    data = np.array([[1.0, 2.0, 3.0]])
    request = marked(
        [Tensor("input-1", DataType.FP64, data, {"content_type": "np"})], content_type="np"
    )
    apply_content_types(request, TABLE)
    validate_request(request, TABLE)
    assert request.inputs[0].data.dtype == np.float32


def test_without_markers_nothing_is_relaxed() -> None:
    request = marked([column("text", [b"a"], DataType.BYTES)])
    assert request.content_type is None
    with pytest.raises(InvalidInputError, match="expected shape"):
        validate_request(request, TEXT)


def test_an_unknown_content_type_is_left_to_the_model() -> None:
    request = marked([column("text", [b"a"], DataType.BYTES)], content_type="base64")
    assert request.content_type is None
    assert request.parameters == {"content_type": "base64"}


def test_responses_are_marked_for_the_codecs() -> None:
    response = InferenceResponse(
        "m",
        [
            Tensor("label", DataType.BYTES, np.array([b"x"], dtype=object)),
            Tensor("score", DataType.FP32, np.array([0.5], dtype=np.float32)),
        ],
    )
    mark_response(response, "pd")
    assert response.parameters == {"content_type": "pd"}
    assert [t.parameters for t in response.outputs] == [
        {"content_type": "str"},
        {"content_type": "np"},
    ]
    plain = InferenceResponse("m", [Tensor("s", DataType.FP32, np.zeros(1, np.float32))])
    mark_response(plain, "np")
    assert plain.parameters == {}
    assert plain.outputs[0].parameters == {"content_type": "np"}


def test_a_column_may_share_its_name_with_the_input() -> None:
    named = ServableMetadata(
        "test",
        (TensorSpec("x", DataType.FP32, (-1, 2), columns=("w", "x")),),
        (),
    )
    request = marked(
        [column("x", [2.0], DataType.FP64), column("w", [1.0], DataType.FP64)], content_type="pd"
    )
    apply_content_types(request, named)
    validate_request(request, named)
    np.testing.assert_array_equal(request.inputs[0].data, [[1.0, 2.0]])
