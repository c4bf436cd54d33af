"""The gRPC codec: every datatype through raw and typed contents, and every malformed request
rejected as INVALID_ARGUMENT with a message naming the problem."""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from tritonclient.grpc import InferResult
from tritonclient.grpc import service_pb2 as triton_pb
from tritonclient.utils import deserialize_bytes_tensor, serialize_byte_tensor

from serval.core.errors import InvalidInputError
from serval.core.tensors.datatypes import DataType
from serval.core.tensors.raw import decode_raw, encode_raw
from serval.core.types import InferenceResponse, Tensor
from serval.protocols.grpc import codec
from serval.protocols.grpc.generated import grpc_service_pb2 as pb

# The typed member for each datatype, as the Open Inference Protocol assigns them.
MEMBER = {
    DataType.BOOL: "bool_contents",
    DataType.UINT8: "uint_contents",
    DataType.UINT16: "uint_contents",
    DataType.UINT32: "uint_contents",
    DataType.UINT64: "uint64_contents",
    DataType.INT8: "int_contents",
    DataType.INT16: "int_contents",
    DataType.INT32: "int_contents",
    DataType.INT64: "int64_contents",
    DataType.FP32: "fp32_contents",
    DataType.FP64: "fp64_contents",
    DataType.BYTES: "bytes_contents",
}
FIXED = [d for d in DataType if d is not DataType.BYTES]
SHAPES = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4)


@st.composite
def tensors(draw: st.DrawFn, datatypes: list[DataType]) -> tuple[DataType, np.ndarray]:
    datatype = draw(st.sampled_from(datatypes))
    shape = draw(SHAPES)
    if datatype is DataType.BYTES:
        items = draw(
            st.lists(st.binary(max_size=12), min_size=math.prod(shape), max_size=math.prod(shape))
        )
        array = np.empty(len(items), dtype=np.object_)
        array[:] = items
        return datatype, array.reshape(shape)
    return datatype, draw(hnp.arrays(datatype.numpy_dtype, shape))


def typed_contents(datatype: DataType, array: np.ndarray) -> pb.InferTensorContents:
    contents = pb.InferTensorContents()
    getattr(contents, MEMBER[datatype]).extend(array.ravel().tolist())
    return contents


def assert_same(got: np.ndarray, want: np.ndarray, datatype: DataType) -> None:
    assert got.shape == want.shape
    if datatype is DataType.BYTES:
        assert got.dtype == np.object_
        assert got.ravel().tolist() == want.ravel().tolist()
    else:
        assert got.dtype == datatype.numpy_dtype
        np.testing.assert_array_equal(got, want)


# -- round trips -----------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(tensors(list(DataType)))
def test_raw_round_trip_every_datatype(case: tuple[DataType, np.ndarray]) -> None:
    datatype, array = case
    raw = encode_raw(array, datatype)
    assert_same(decode_raw(raw, datatype, array.shape, "x"), array, datatype)


@settings(max_examples=300, deadline=None)
@given(tensors([d for d in DataType if d is not DataType.FP16]))
def test_typed_contents_decode_every_datatype(case: tuple[DataType, np.ndarray]) -> None:
    datatype, array = case
    contents = typed_contents(datatype, array)
    assert_same(codec.decode_contents(contents, datatype, array.shape, where="x"), array, datatype)


@settings(max_examples=200, deadline=None)
@given(tensors(FIXED))
def test_raw_layout_is_little_endian_row_major(case: tuple[DataType, np.ndarray]) -> None:
    datatype, array = case
    expected = np.ascontiguousarray(array).astype(datatype.numpy_dtype.newbyteorder("<"))
    assert encode_raw(array, datatype) == expected.tobytes()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=20), max_size=8))
def test_raw_bytes_layout_matches_tritonclient(items: list[bytes]) -> None:
    array = np.empty(len(items), dtype=np.object_)
    array[:] = items
    raw = encode_raw(array, DataType.BYTES)
    if items:
        assert raw == serialize_byte_tensor(array).item()
        assert deserialize_bytes_tensor(raw).tolist() == items
    else:
        assert raw == b""
    assert decode_raw(raw, DataType.BYTES, (len(items),), "x").tolist() == items


def test_raw_decode_does_not_copy() -> None:
    raw = np.arange(6, dtype=np.float32).tobytes()
    array = decode_raw(raw, DataType.FP32, (2, 3), "x")
    assert not array.flags.owndata
    assert array.base is not None


def test_bool_raw_nonzero_bytes_are_true() -> None:
    array = decode_raw(bytes([0, 1, 2, 255]), DataType.BOOL, (4,), "x")
    assert array.tolist() == [False, True, True, True]


def test_bytes_outputs_accept_str_items() -> None:
    array = np.array(["é", b"b"], dtype=np.object_)
    assert encode_raw(array, DataType.BYTES) == b"\x02\x00\x00\x00\xc3\xa9\x01\x00\x00\x00b"


# -- whole messages --------------------------------------------------------------------------


def _request(**fields: object) -> pb.ModelInferRequest:
    return pb.ModelInferRequest(model_name="m", **fields)


def test_decode_request_raw_with_everything() -> None:
    message = _request(model_version="2", id="req-7")
    message.parameters["priority"].int64_param = 3
    message.parameters["flag"].bool_param = True
    message.parameters["ratio"].double_param = 0.5
    message.parameters["big"].uint64_param = 2**64 - 1
    message.parameters["tag"].string_param = "x"
    a = message.inputs.add(name="a", datatype="FP16", shape=[2])
    a.parameters["note"].string_param = "n"
    message.inputs.add(name="b", datatype="BYTES", shape=[1, 2])
    message.raw_input_contents.extend(
        [np.array([1.5, -2], dtype="<f2").tobytes(), b"\x01\x00\x00\x00a\x00\x00\x00\x00"]
    )
    out = message.outputs.add(name="y")
    out.parameters["classification"].int64_param = 2

    request = codec.decode_request(message)

    assert request.model_name == "m"
    assert request.model_version == "2"
    assert request.id == "req-7"
    assert request.priority == 3  # Triton's schedule parameter, taken off for the core
    assert request.parameters == {
        "flag": True,
        "ratio": 0.5,
        "big": 2**64 - 1,
        "tag": "x",
    }
    assert [t.name for t in request.inputs] == ["a", "b"]
    assert request.inputs[0].datatype is DataType.FP16
    assert request.inputs[0].data.tolist() == [1.5, -2.0]
    assert request.inputs[0].parameters == {"note": "n"}
    assert request.inputs[1].data.tolist() == [[b"a", b""]]
    assert request.outputs is not None
    assert [(o.name, dict(o.parameters)) for o in request.outputs] == [("y", {"classification": 2})]


def test_decode_request_defaults() -> None:
    message = _request()
    message.inputs.add(name="a", datatype="INT32", shape=[2]).contents.int_contents.extend([1, 2])
    request = codec.decode_request(message)
    assert request.model_version is None
    assert request.id is None
    assert request.outputs is None
    assert request.parameters == {}
    assert request.inputs[0].data.dtype == np.int32


def test_encode_response_is_readable_by_tritonclient() -> None:
    outputs = [
        Tensor("f", DataType.FP32, np.arange(6, dtype=np.float32).reshape(2, 3)),
        Tensor("h", DataType.FP16, np.array([0.5, 1], dtype=np.float16)),
        Tensor("b", DataType.BOOL, np.array([[True], [False]])),
        Tensor(
            "s",
            DataType.BYTES,
            np.array([b"one", b"", b"three"], dtype=np.object_),
            parameters={"kind": "text"},
        ),
        Tensor("u", DataType.UINT64, np.array([2**64 - 1], dtype=np.uint64)),
    ]
    response = InferenceResponse(
        "m",
        outputs,
        model_version="3",
        id="i",
        parameters={"cached": False, "n": 2**63, "score": 0.25},
    )
    message = codec.encode_response(response)
    assert [o.HasField("contents") for o in message.outputs] == [False] * 5

    result = InferResult(triton_pb.ModelInferResponse.FromString(message.SerializeToString()))
    for tensor in outputs:
        got = result.as_numpy(tensor.name)
        assert got.shape == tensor.data.shape
        assert got.ravel().tolist() == tensor.data.ravel().tolist()
    wire = result.get_response()
    assert (wire.model_name, wire.model_version, wire.id) == ("m", "3", "i")
    assert wire.parameters["cached"].bool_param is False
    assert wire.parameters["n"].uint64_param == 2**63
    assert wire.parameters["score"].double_param == 0.25
    assert wire.outputs[3].parameters["kind"].string_param == "text"


def test_parameters_round_trip() -> None:
    values = {"b": True, "i": -5, "u": 2**64 - 1, "f": 1.25, "s": "x"}
    message = pb.ModelInferResponse()
    codec.encode_parameters(values, message.parameters)
    assert codec.decode_parameters(message.parameters, where="r") == values


# -- malformed requests ----------------------------------------------------------------------


def _raw_request(datatype: str, shape: list[int], raw: bytes) -> pb.ModelInferRequest:
    message = _request()
    message.inputs.add(name="x", datatype=datatype, shape=shape)
    message.raw_input_contents.append(raw)
    return message


def _typed_request(
    datatype: str, shape: list[int], **contents: list[object]
) -> pb.ModelInferRequest:
    message = _request()
    message.inputs.add(
        name="x", datatype=datatype, shape=shape, contents=pb.InferTensorContents(**contents)
    )
    return message


def _mixed() -> pb.ModelInferRequest:
    message = _typed_request("FP32", [1], fp32_contents=[1.0])
    message.inputs.add(name="z", datatype="FP32", shape=[1])
    message.raw_input_contents.extend([b"\0" * 4, b"\0" * 4])
    return message


def _too_few_raw() -> pb.ModelInferRequest:
    message = _raw_request("FP32", [1], b"\0" * 4)
    message.inputs.add(name="z", datatype="FP32", shape=[1])
    return message


def _empty_parameter() -> pb.ModelInferRequest:
    message = _typed_request("FP32", [1], fp32_contents=[1.0])
    message.parameters["p"].SetInParent()
    return message


MALFORMED = {
    "empty model name": (pb.ModelInferRequest(), "model_name is empty"),
    "unknown datatype": (_raw_request("FLOAT", [1], b"\0" * 4), "unknown datatype 'FLOAT'"),
    "negative dimension": (_raw_request("FP32", [-1], b""), "negative dimension"),
    "raw size vs shape": (_raw_request("FP32", [2, 2], b"\0" * 12), "needs 16 bytes, received 12"),
    "raw and typed mixed": (_mixed(), "no input may set contents"),
    "raw entries vs inputs": (_too_few_raw(), "1 entries for 2 inputs"),
    "raw bytes truncated": (_raw_request("BYTES", [2], b"\1\0\0\0a"), "ends after 1 of 2"),
    "raw bytes overlong element": (_raw_request("BYTES", [1], b"\x09\0\0\0a"), "declares 9 bytes"),
    "raw bytes leftover": (_raw_request("BYTES", [1], b"\1\0\0\0ab"), "1 bytes left over"),
    "typed count vs shape": (
        _typed_request("INT64", [3], int64_contents=[1, 2]),
        "holds 2 elements but shape [3] needs 3",
    ),
    "wrong member": (
        _typed_request("INT32", [1], fp32_contents=[1.0]),
        "takes its data in contents.int_contents, received contents.fp32_contents",
    ),
    "fp16 typed": (_typed_request("FP16", [1], fp32_contents=[1.0]), "send it in raw"),
    "out of range": (
        _typed_request("UINT8", [2], uint_contents=[1, 256]),
        "outside the range of UINT8",
    ),
    "negative int8": (_typed_request("INT8", [1], int_contents=[-129]), "range of INT8"),
    "no data": (_typed_request("FP32", [2]), "no data"),
    "parameter without value": (_empty_parameter(), "parameter 'p' has no value"),
}


@pytest.mark.parametrize("case", MALFORMED, ids=list(MALFORMED))
def test_malformed_request_is_invalid_argument(case: str) -> None:
    message, expected = MALFORMED[case]
    with pytest.raises(InvalidInputError) as info:
        codec.decode_request(message)
    assert expected in info.value.message


def test_empty_tensors_need_no_data() -> None:
    message = _request()
    message.inputs.add(name="x", datatype="FP16", shape=[0, 3])
    message.inputs.add(name="y", datatype="BYTES", shape=[0])
    request = codec.decode_request(message)
    assert [t.data.shape for t in request.inputs] == [(0, 3), (0,)]


def test_huge_dimension_is_invalid_argument_not_a_crash() -> None:
    with pytest.raises(InvalidInputError):
        codec.decode_request(_raw_request("FP32", [0, 2**62, 2**62], b""))


def test_raw_bytes_lengths_are_little_endian() -> None:
    raw = struct.pack("<I", 3) + b"abc"
    assert decode_raw(raw, DataType.BYTES, (1,), "x").tolist() == [b"abc"]
