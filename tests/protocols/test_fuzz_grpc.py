"""Fuzzing the gRPC codec (``protocols/grpc/codec.py``): whole ModelInferRequest and
ModelInferResponse messages encode -> decode to the same tensors for every datatype (raw and
typed contents), and any message a client can send raises nothing but serval's own errors."""

from __future__ import annotations

import contextlib

import numpy as np
from google.protobuf.message import DecodeError
from hypothesis import given
from hypothesis import strategies as st

from serval.core.errors import ServalError
from serval.core.tensors.datatypes import DataType
from serval.core.tensors.raw import decode_raw, encode_raw
from serval.core.types import InferenceResponse, Tensor
from serval.protocols.grpc import codec
from serval.protocols.grpc.generated import grpc_service_pb2 as pb
from tests.protocols.fuzz_strategies import DATATYPE_NAMES, assert_same, fuzz, tensors

ALL = list(DataType)
TYPED = [d for d in DataType if d is not DataType.FP16]  # FP16 has no contents member


@fuzz(100)
@given(st.lists(tensors(ALL), min_size=1, max_size=3), st.booleans())
def test_request_round_trip(cases: list[tuple[DataType, np.ndarray]], raw: bool) -> None:
    raw = raw or any(datatype is DataType.FP16 for datatype, _ in cases)
    message = pb.ModelInferRequest(model_name="m", id="r")
    for index, (datatype, array) in enumerate(cases):
        tensor = message.inputs.add(name=f"x{index}", datatype=datatype.value, shape=array.shape)
        if raw:
            message.raw_input_contents.append(encode_raw(array, datatype))
        else:
            member = getattr(tensor.contents, codec.CONTENTS_FIELD[datatype])
            member.extend(array.ravel().tolist())
    request = codec.decode_request(pb.ModelInferRequest.FromString(message.SerializeToString()))
    assert (request.model_name, request.id) == ("m", "r")
    for tensor, (datatype, array) in zip(request.inputs, cases, strict=True):
        assert tensor.datatype is datatype
        assert_same(tensor.data, array, datatype)


@fuzz(100)
@given(st.lists(tensors(ALL), min_size=1, max_size=3))
def test_response_round_trip(cases: list[tuple[DataType, np.ndarray]]) -> None:
    outputs = [Tensor(f"y{i}", datatype, array) for i, (datatype, array) in enumerate(cases)]
    wire = codec.encode_response(InferenceResponse("m", outputs, model_version="1"))
    message = pb.ModelInferResponse.FromString(wire.SerializeToString())
    assert len(message.raw_output_contents) == len(cases)
    for output, raw, (datatype, array) in zip(
        message.outputs, message.raw_output_contents, cases, strict=True
    ):
        assert output.datatype == datatype.value
        assert_same(decode_raw(raw, datatype, list(output.shape), output.name), array, datatype)


INT64 = st.integers(-(2**63), 2**63 - 1)
CONTENTS = st.fixed_dictionaries(
    {},
    optional={
        "bool_contents": st.lists(st.booleans(), max_size=4),
        "int_contents": st.lists(st.integers(-(2**31), 2**31 - 1), max_size=4),
        "int64_contents": st.lists(INT64, max_size=4),
        "uint_contents": st.lists(st.integers(0, 2**32 - 1), max_size=4),
        "uint64_contents": st.lists(st.integers(0, 2**64 - 1), max_size=4),
        "fp32_contents": st.lists(st.floats(width=32), max_size=4),
        "fp64_contents": st.lists(st.floats(), max_size=4),
        "bytes_contents": st.lists(st.binary(max_size=4), max_size=4),
    },
)
# Protobuf dimensions are int64: negative ones too, and the ones that broke decoders before.
DIMENSIONS = st.integers(-2, 4) | st.sampled_from([2**31, 2**32, 2**62, 2**63 - 1, -(2**63)])
SHAPES = st.lists(DIMENSIONS, max_size=4) | st.lists(st.just(1), min_size=30, max_size=70)
PARAMETER = st.one_of(
    st.builds(pb.InferParameter, bool_param=st.booleans()),
    st.builds(pb.InferParameter, int64_param=INT64),
    st.builds(pb.InferParameter, string_param=st.text(max_size=4)),
    st.builds(pb.InferParameter, double_param=st.floats()),
    st.builds(pb.InferParameter, uint64_param=st.integers(0, 2**64 - 1)),
    st.just(pb.InferParameter()),  # no value at all
)
PARAMETERS = st.dictionaries(
    st.sampled_from(["timeout", "priority", "binary_data_size", "sequence_id", "x"]),
    PARAMETER,
    max_size=3,
)


@st.composite
def requests(draw: st.DrawFn) -> pb.ModelInferRequest:
    """Any ModelInferRequest a client can build: every field, any value."""
    text = st.text(max_size=3)
    message = pb.ModelInferRequest(model_name=draw(text), model_version=draw(text), id=draw(text))
    for key, value in draw(PARAMETERS).items():
        message.parameters[key].CopyFrom(value)
    for _ in range(draw(st.integers(0, 3))):
        tensor = message.inputs.add(
            name=draw(text), datatype=draw(DATATYPE_NAMES), shape=draw(SHAPES)
        )
        for member, values in draw(CONTENTS).items():
            getattr(tensor.contents, member).extend(values)
        for key, value in draw(PARAMETERS).items():
            tensor.parameters[key].CopyFrom(value)
    if draw(st.booleans()):
        message.raw_input_contents.extend(draw(st.lists(st.binary(max_size=32), max_size=3)))
    for _ in range(draw(st.integers(0, 2))):
        output = message.outputs.add(name=draw(text))
        for key, value in draw(PARAMETERS).items():
            output.parameters[key].CopyFrom(value)
    return message


@fuzz(150)
@given(requests())
def test_any_request_raises_only_serval_errors(message: pb.ModelInferRequest) -> None:
    with contextlib.suppress(ServalError):
        codec.decode_request(message)


@fuzz(300)
@given(st.binary(max_size=200))
def test_arbitrary_wire_bytes_raise_only_serval_errors(data: bytes) -> None:
    try:
        message = pb.ModelInferRequest.FromString(data)
    except DecodeError:
        return  # grpcio answers INTERNAL before the servicer runs; nothing of ours to test
    with contextlib.suppress(ServalError):
        codec.decode_request(message)
