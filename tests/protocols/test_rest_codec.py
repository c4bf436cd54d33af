"""The V2 REST codec: JSON and binary tensor data, both ways, and every client mistake."""

from __future__ import annotations

import struct

import numpy as np
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from serval.core.errors import InvalidInputError
from serval.core.tensors.datatypes import DataType
from serval.core.tensors.raw import encode_raw
from serval.core.types import InferenceRequest, InferenceResponse, RequestedOutput, Tensor
from serval.protocols.rest.json_tensors import json_to_array
from serval.protocols.rest.v2_codec import (
    BinaryOutputs,
    decode_infer_request,
    encode_infer_response,
)

JSON_TYPES = [d for d in DataType if d not in (DataType.FP16, DataType.BYTES)]
shapes = hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4)


def _elements(datatype: DataType) -> st.SearchStrategy[np.ndarray]:
    dtype = datatype.numpy_dtype
    elements = None
    if dtype.kind == "f":
        elements = st.floats(allow_nan=False, allow_infinity=False, width=dtype.itemsize * 8)
    return hnp.arrays(dtype, shapes, elements=elements)


def decode_both(
    doc: dict, binary: bytes = b"", header: bool = False
) -> tuple[InferenceRequest, BinaryOutputs]:
    body = orjson.dumps(doc)
    length = str(len(body)) if header or binary else None
    return decode_infer_request(body + binary, length, "m", None)


def decode(doc: dict, binary: bytes = b"", header: bool = False) -> InferenceRequest:
    return decode_both(doc, binary, header)[0]


@given(st.sampled_from(JSON_TYPES).flatmap(lambda d: st.tuples(st.just(d), _elements(d))))
def test_json_round_trip(case: tuple[DataType, np.ndarray]) -> None:
    datatype, array = case
    doc = {
        "inputs": [
            {
                "name": "x",
                "datatype": datatype.value,
                "shape": list(array.shape),
                "data": array.reshape(-1).tolist(),
            }
        ]
    }
    (tensor,) = decode(doc).inputs
    np.testing.assert_array_equal(tensor.data, array)
    assert tensor.data.dtype == array.dtype
    response = InferenceResponse("m", [Tensor("y", datatype, tensor.data)])
    encoded = encode_infer_response(response, decode_both(doc)[1])
    out = orjson.loads(encoded.body)["outputs"][0]
    assert out["shape"] == list(array.shape)
    np.testing.assert_array_equal(
        np.array(out["data"], dtype=array.dtype).reshape(array.shape), array
    )


@given(
    st.sampled_from(list(DataType)).flatmap(
        lambda d: st.tuples(
            st.just(d),
            _elements(d)
            if d is not DataType.BYTES
            else st.lists(st.binary(max_size=8), min_size=1, max_size=6),
        )
    )
)
def test_binary_round_trip(case: tuple[DataType, object]) -> None:
    datatype, data = case
    array = data if isinstance(data, np.ndarray) else np.array([*data, b""], np.object_)[:-1]
    raw = encode_raw(array, datatype)
    doc = {
        "inputs": [
            {
                "name": "x",
                "datatype": datatype.value,
                "shape": list(array.shape),
                "parameters": {"binary_data_size": len(raw)},
            }
        ],
        "outputs": [{"name": "y", "parameters": {"binary_data": True}}],
    }
    request, binary = decode_both(doc, raw)
    np.testing.assert_array_equal(request.inputs[0].data, array)
    assert request.outputs == [RequestedOutput("y", {})]  # binary_data is the adapter's
    encoded = encode_infer_response(
        InferenceResponse("m", [Tensor("y", datatype, request.inputs[0].data)]), binary
    )
    assert encoded.json_length is not None
    header = orjson.loads(encoded.body[: encoded.json_length])
    assert header["outputs"][0]["parameters"]["binary_data_size"] == len(raw)
    assert encoded.body[encoded.json_length :] == raw


def test_nested_and_flat_json_data_are_equal() -> None:
    nested = decode(
        {"inputs": [{"name": "x", "datatype": "INT32", "shape": [2, 2], "data": [[1, 2], [3, 4]]}]}
    )
    flat = decode(
        {"inputs": [{"name": "x", "datatype": "INT32", "shape": [2, 2], "data": [1, 2, 3, 4]}]}
    )
    np.testing.assert_array_equal(nested.inputs[0].data, flat.inputs[0].data)


def test_request_fields_are_carried() -> None:
    request = decode(
        {
            "id": "r1",
            "parameters": {"a": 1, "b": "x"},
            "inputs": [{"name": "x", "datatype": "BYTES", "shape": [2], "data": ["hi", "there"]}],
            "outputs": [{"name": "y"}],
        }
    )
    assert request.id == "r1"
    assert request.parameters == {"a": 1, "b": "x"}
    assert request.outputs == [RequestedOutput("y", {})]
    assert list(request.inputs[0].data) == [b"hi", b"there"]


def test_binary_data_output_default_and_per_output_override() -> None:
    request, binary = decode_both(
        {
            "parameters": {"binary_data_output": True},
            "inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}],
            "outputs": [{"name": "a"}, {"name": "b", "parameters": {"binary_data": False}}],
        }
    )
    response = InferenceResponse(
        "m",
        [
            Tensor("a", DataType.FP32, np.ones(2, np.float32)),
            Tensor("b", DataType.FP32, np.ones(2, np.float32)),
        ],
        model_version="1",
        id="r",
    )
    assert request.parameters == {}  # taken off: they concern the transport only
    encoded = encode_infer_response(response, binary)
    header = orjson.loads(encoded.body[: encoded.json_length])
    assert header["model_version"] == "1" and header["id"] == "r"
    assert "binary_data_size" in header["outputs"][0]["parameters"]
    assert header["outputs"][1]["data"] == [1.0, 1.0]
    assert encoded.body[encoded.json_length :] == struct.pack("<2f", 1, 1)


def _input(**fields: object) -> dict:
    base = {"name": "x", "datatype": "FP32", "shape": [2], "data": [1.0, 2.0]}
    base.update(fields)
    return {"inputs": [base]}


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({}, "'inputs' must be a non-empty list"),
        ({"inputs": [{"datatype": "FP32", "shape": [1], "data": [1]}]}, "inputs[0].name"),
        (_input(datatype="FP99"), "unknown datatype 'FP99'"),
        (_input(shape=[3]), "shape [3] needs 3 elements, data has 2"),
        (_input(shape=[-1]), "shape must be a list of non-negative integers"),
        (_input(shape="2"), "shape must be a list"),
        (_input(data=["a", "b"]), "FP32 data must be numbers, received strings"),
        (_input(data=[True, False]), "FP32 data must be numbers, received booleans"),
        (_input(data=[[1.0], [2.0, 3.0]], shape=[3]), "not a regular"),
        (_input(datatype="INT8", data=[1, 300]), "outside the range of INT8"),
        (_input(datatype="INT32", data=[1.5, 2]), "must be integers"),
        (_input(datatype="BOOL", data=["yes", "no"]), "BOOL data must be true/false"),
        (_input(datatype="FP16"), "FP16 data must be sent in binary"),
        (_input(datatype="BYTES", data=[1, 2]), "BYTES data must be strings"),
        ({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1]}]}, "neither 'data'"),
        ({"id": 5, **_input()}, "'id' must be a string"),
        ({"parameters": {"a": [1]}, **_input()}, "'a' must be a string, number or boolean"),
        ({"outputs": [{"nam": "y"}], **_input()}, "outputs[0] must be an object"),
    ],
)
def test_client_mistakes_are_named(doc: dict, message: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        decode(doc)
    assert message in caught.value.message


def test_malformed_json() -> None:
    with pytest.raises(InvalidInputError, match="not valid JSON"):
        decode_infer_request(b"{nope", None, "m", None)
    with pytest.raises(InvalidInputError, match="must be a JSON object"):
        decode_infer_request(b"[1]", None, "m", None)


def test_truncated_binary_body() -> None:
    doc = {
        "inputs": [
            {"name": "x", "datatype": "FP32", "shape": [4], "parameters": {"binary_data_size": 16}}
        ]
    }
    with pytest.raises(InvalidInputError, match="only 8 bytes of binary data remain"):
        decode(doc, b"\0" * 8)
    with pytest.raises(InvalidInputError, match="exceeds the body"):
        decode_infer_request(b"{}", "100", "m", None)
    with pytest.raises(InvalidInputError, match="no input's binary_data_size accounts"):
        decode(_input(), b"extra")


def test_fp16_output_needs_binary() -> None:
    _, binary = decode_both(_input())
    response = InferenceResponse("m", [Tensor("h", DataType.FP16, np.ones(1, np.float16))])
    with pytest.raises(InvalidInputError, match="binary_data: true"):
        encode_infer_response(response, binary)


def test_json_to_array_keeps_bytes_shape() -> None:
    array = json_to_array([["a", "b"], ["c", {"b64": "ZA=="}]], DataType.BYTES, "x")
    assert array.shape == (2, 2)
    assert array[1, 1] == b"d"


def test_null_parameters_are_absent_as_mlserver_types_send_them() -> None:
    body = orjson.dumps(
        {
            "parameters": {"content_type": "np", "headers": None},
            "inputs": [
                {
                    "name": "x",
                    "datatype": "FP32",
                    "shape": [1],
                    "data": [1.0],
                    "parameters": {"content_type": "np", "headers": None},
                }
            ],
        }
    )
    request, _ = decode_infer_request(body, None, "m", None)
    assert request.parameters == {}
    assert request.content_type == "np"
    assert request.inputs[0].parameters == {"content_type": "np"}


def test_an_output_carries_its_content_type_and_no_other_parameter() -> None:
    marked = Tensor(
        "y",
        DataType.FP32,
        np.array([1.0], np.float32),
        {"content_type": "np", "binary_data_size": 4},  # e.g. a model that echoes its input
    )
    plain = Tensor("z", DataType.FP32, np.array([2.0], np.float32), {"binary_data_size": 4})
    doc = orjson.loads(encode_infer_response(InferenceResponse("m", [marked, plain])).body)
    assert doc["outputs"][0]["parameters"] == {"content_type": "np"}
    assert "parameters" not in doc["outputs"][1]
