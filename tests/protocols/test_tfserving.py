"""TF Serving's tensors (TensorProto <-> Tensor), signature names and status messages."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
from google.protobuf.message import DecodeError
from hypothesis import given
from hypothesis import strategies as st

from serval.core.errors import InvalidInputError, ServalError
from serval.core.lifecycle.states import ServableId, ServableState, ServableStatus
from serval.core.tensors.datatypes import DataType
from serval.core.types import (
    InferenceRequest,
    ModelMetadata,
    ServableMetadata,
    SignatureSpec,
    Tensor,
    TensorSpec,
)
from serval.protocols.grpc.generated.tensorflow.core.framework import tensor_pb2, types_pb2
from serval.protocols.grpc.generated.tensorflow_serving.apis import get_model_status_pb2
from serval.protocols.grpc.tfserving import messages
from serval.protocols.grpc.tfserving.tensors import decode_tensor, encode_tensor
from serval.protocols.oip.tf_serving import select_signature
from tests.protocols.fuzz_strategies import assert_same, fuzz, tensors

NUMERIC = [
    (DataType.BOOL, np.array([[True, False, True]])),
    (DataType.UINT8, np.array([[0, 7, 255]], dtype=np.uint8)),
    (DataType.UINT16, np.array([[0, 7, 65535]], dtype=np.uint16)),
    (DataType.UINT32, np.array([[0, 7, 2**32 - 1]], dtype=np.uint32)),
    (DataType.UINT64, np.array([[0, 7, 2**64 - 1]], dtype=np.uint64)),
    (DataType.INT8, np.array([[-128, 0, 127]], dtype=np.int8)),
    (DataType.INT16, np.array([[-(2**15), 0, 2**15 - 1]], dtype=np.int16)),
    (DataType.INT32, np.array([[-(2**31), 0, 2**31 - 1]], dtype=np.int32)),
    (DataType.INT64, np.array([[-(2**63), 0, 2**63 - 1]], dtype=np.int64)),
    (DataType.FP16, np.array([[0.5, -2.0, 65504.0]], dtype=np.float16)),
    (DataType.FP32, np.array([[0.1, -2.5, 3e38]], dtype=np.float32)),
    (DataType.FP64, np.array([[0.1, -2.5, 1e300]], dtype=np.float64)),
]


@pytest.mark.parametrize(("datatype", "array"), NUMERIC, ids=[d.value for d, _ in NUMERIC])
def test_typed_values_round_trip(datatype: DataType, array: np.ndarray) -> None:
    proto = tensor_pb2.TensorProto()
    encode_tensor(Tensor("t", datatype, array), proto)
    assert [d.size for d in proto.tensor_shape.dim] == [1, 3]
    assert not proto.tensor_content  # typed fields, as TF Serving answers by default
    decoded = decode_tensor("t", proto)
    assert decoded.datatype is datatype
    assert decoded.data.dtype == datatype.numpy_dtype
    np.testing.assert_array_equal(decoded.data, array)


@pytest.mark.parametrize(("datatype", "array"), NUMERIC, ids=[d.value for d, _ in NUMERIC])
def test_tensor_content_is_read_as_little_endian(datatype: DataType, array: np.ndarray) -> None:
    proto = tensor_pb2.TensorProto()
    encode_tensor(Tensor("t", datatype, array), proto)
    raw = tensor_pb2.TensorProto(dtype=proto.dtype, tensor_shape=proto.tensor_shape)
    raw.tensor_content = array.astype(array.dtype.newbyteorder("<")).tobytes()
    decoded = decode_tensor("t", raw)
    np.testing.assert_array_equal(decoded.data, array)
    assert decoded.shape == (1, 3)


def test_strings() -> None:
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING, string_val=[b"a", b"\xff", b""])
    proto.tensor_shape.dim.add(size=3)
    decoded = decode_tensor("s", proto)
    assert decoded.datatype is DataType.BYTES
    assert decoded.data.dtype == np.object_
    assert decoded.data.tolist() == [b"a", b"\xff", b""]
    out = tensor_pb2.TensorProto()
    encode_tensor(Tensor.from_numpy("s", np.array(["x", "é"])), out)
    assert out.dtype == types_pb2.DT_STRING
    assert list(out.string_val) == [b"x", "é".encode()]


def test_a_scalar_and_an_empty_tensor() -> None:
    scalar = tensor_pb2.TensorProto(dtype=types_pb2.DT_INT64, int64_val=[7])
    assert decode_tensor("s", scalar).data.shape == ()
    assert decode_tensor("s", scalar).data.item() == 7
    empty = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT)
    empty.tensor_shape.dim.add(size=0)
    empty.tensor_shape.dim.add(size=3)
    assert decode_tensor("e", empty).data.shape == (0, 3)


def test_fewer_values_are_padded_with_the_last_one() -> None:
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_INT32, int_val=[1, 2])
    proto.tensor_shape.dim.add(size=2)
    proto.tensor_shape.dim.add(size=2)
    assert decode_tensor("p", proto).data.tolist() == [[1, 2], [2, 2]]


def _shaped(**fields: object) -> tensor_pb2.TensorProto:
    proto = tensor_pb2.TensorProto(**fields)
    proto.tensor_shape.dim.add(size=2)
    return proto


@pytest.mark.parametrize(
    ("proto", "message"),
    [
        (_shaped(dtype=types_pb2.DT_BFLOAT16), "DT_BFLOAT16 is not supported"),
        (tensor_pb2.TensorProto(dtype=types_pb2.DT_INVALID), "DT_INVALID is not supported"),
        (_shaped(dtype=types_pb2.DT_FLOAT), "float_val has 0 values; the shape holds 2"),
        (_shaped(dtype=types_pb2.DT_FLOAT, float_val=[1, 2, 3]), "float_val has 3 values"),
        (_shaped(dtype=types_pb2.DT_FLOAT, tensor_content=b"\0" * 7), "tensor_content has 7"),
        (_shaped(dtype=types_pb2.DT_STRING, tensor_content=b"ab"), "string_val"),
        (_shaped(dtype=types_pb2.DT_UINT8, int_val=[1, 256]), "out of range for DT_UINT8"),
        (_shaped(dtype=types_pb2.DT_INT8, int_val=[-129, 0]), "out of range for DT_INT8"),
    ],
)
def test_malformed_tensors_name_the_input(proto: tensor_pb2.TensorProto, message: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        decode_tensor("x", proto)
    assert "input 'x'" in str(caught.value)
    assert message in str(caught.value)


def test_unknown_rank_and_negative_dimensions_are_refused() -> None:
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT)
    proto.tensor_shape.unknown_rank = True
    with pytest.raises(InvalidInputError, match="unknown_rank"):
        decode_tensor("x", proto)
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT)
    proto.tensor_shape.dim.add(size=-1)
    with pytest.raises(InvalidInputError, match="negative"):
        decode_tensor("x", proto)


# -- signatures ------------------------------------------------------------------------------

PYTHON = ServableMetadata(
    "python",
    (TensorSpec("text", DataType.BYTES, (-1,)),),
    (TensorSpec("loud", DataType.BYTES, (-1,)),),
    signatures=("predict", "length"),
)
ONNX = ServableMetadata("onnx", PYTHON.inputs, PYTHON.outputs)


@pytest.mark.parametrize("name", ["", "serving_default"])
def test_the_default_signature_sets_no_parameter(name: str) -> None:
    for metadata in (PYTHON, ONNX):
        request = InferenceRequest("m", [], parameters={"x": 1})
        select_signature(request, metadata, name)
        assert request.parameters == {"x": 1}


def test_a_named_signature_becomes_the_signature_parameter() -> None:
    shared = {"x": 1}
    request = InferenceRequest("m", [], parameters=shared)
    select_signature(request, PYTHON, "length")
    assert request.parameters == {"x": 1, "signature": "length"}
    assert shared == {"x": 1}  # the request's own mapping is never changed in place


@pytest.mark.parametrize("metadata", [PYTHON, ONNX], ids=["python", "onnx"])
def test_an_unknown_signature_is_invalid(metadata: ServableMetadata) -> None:
    with pytest.raises(InvalidInputError) as caught:
        select_signature(InferenceRequest("m", []), metadata, "classify")
    text = str(caught.value)
    assert "model 'm' has no signature 'classify'" in text
    assert "serving_default" in text
    assert ("length" in text) is (metadata is PYTHON)


# A SavedModel's signature defs: each with its own tensors, real names; one without a default.
FEATURES = (TensorSpec("features", DataType.FP32, (-1, 4)),)
SCORES = (TensorSpec("scores", DataType.FP32, (-1, 3)),)
SAVED = ServableMetadata(
    "tensorflow_savedmodel",
    FEATURES,
    SCORES,
    signatures=("serving_default", "length"),
    signature_specs=(
        SignatureSpec("serving_default", FEATURES, SCORES),
        SignatureSpec("length", PYTHON.inputs, (TensorSpec("n", DataType.INT32, (-1,)),)),
    ),
)
NO_DEFAULT = ServableMetadata(
    "tensorflow_savedmodel",
    FEATURES,
    SCORES,
    signatures=("scores", "length"),
    signature_specs=(SignatureSpec("scores", FEATURES, SCORES), SAVED.signature_specs[1]),
    requires_signature=True,
)


def test_signature_defs_of_a_savedmodel_use_their_own_names_and_tensors() -> None:
    request = InferenceRequest("m", [])
    select_signature(request, SAVED, "serving_default")  # the default: no parameter
    assert request.parameters == {}
    select_signature(request, SAVED, "length")
    assert request.parameters == {"signature": "length"}
    request = InferenceRequest("m", [])
    select_signature(request, NO_DEFAULT, "scores")  # the first, but not a default
    assert request.parameters == {"signature": "scores"}
    with pytest.raises(InvalidInputError, match=r"no signature 'serving_default'.*scores, length"):
        select_signature(InferenceRequest("m", []), NO_DEFAULT, "serving_default")

    model = ModelMetadata(
        "m",
        ("1",),
        NO_DEFAULT.platform,
        NO_DEFAULT.inputs,
        NO_DEFAULT.outputs,
        NO_DEFAULT.signatures,
        signature_specs=NO_DEFAULT.signature_specs,
        requires_signature=True,
    )
    found = messages.signature_def_map(model).signature_def
    assert set(found) == {"scores", "length"}
    assert list(found["scores"].inputs) == ["features"]
    assert list(found["length"].inputs) == ["text"]
    assert found["length"].outputs["n"].dtype == types_pb2.DT_INT32


def test_model_status_states_and_errors() -> None:
    reply = messages.model_status(
        [
            ServableStatus(ServableId("m", 1), ServableState.AVAILABLE),
            ServableStatus(ServableId("m", 2), ServableState.END, error="failed to load: boom"),
        ]
    )
    first, second = reply.model_version_status
    state = get_model_status_pb2.ModelVersionStatus
    assert (first.version, first.state, first.status.error_code) == (1, state.AVAILABLE, 0)
    assert (second.version, second.state) == (2, state.END)
    assert second.status.error_code == 2  # UNKNOWN, as TF Serving reports a failed load
    assert second.status.error_message


def test_a_few_values_cannot_fill_a_huge_tensor() -> None:
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, float_val=[1.0])
    for size in (2**20, 2**20, 2**10):
        proto.tensor_shape.dim.add(size=size)
    with pytest.raises(InvalidInputError, match="send them all"):
        decode_tensor("x", proto)
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, float_val=[1.0])
    for _ in range(40):
        proto.tensor_shape.dim.add(size=1)
    with pytest.raises(InvalidInputError, match="40 dimensions"):
        decode_tensor("x", proto)


# -- fuzzing ---------------------------------------------------------------------------------


@fuzz(100)
@given(tensors(list(DataType)), st.booleans())
def test_fuzz_round_trip_through_the_wire(case: tuple[DataType, np.ndarray], raw: bool) -> None:
    datatype, array = case
    proto = tensor_pb2.TensorProto()
    encode_tensor(Tensor("t", datatype, array), proto)
    if raw and datatype is not DataType.BYTES:
        for field in ("bool_val", "int_val", "int64_val", "uint32_val", "uint64_val"):
            proto.ClearField(field)
        for field in ("half_val", "float_val", "double_val"):
            proto.ClearField(field)
        proto.tensor_content = array.astype(array.dtype.newbyteorder("<")).tobytes()
    decoded = decode_tensor("t", tensor_pb2.TensorProto.FromString(proto.SerializeToString()))
    assert decoded.datatype is datatype
    assert_same(decoded.data, array, datatype)


@fuzz(300)
@given(st.binary(max_size=200))
def test_fuzz_any_message_raises_only_serval_errors(data: bytes) -> None:
    try:
        proto = tensor_pb2.TensorProto.FromString(data)
    except DecodeError:
        return
    with contextlib.suppress(ServalError):
        decode_tensor("x", proto)


@fuzz(200)
@given(
    st.sampled_from(sorted(types_pb2.DataType.values())),
    st.lists(st.integers(-3, 2**40), max_size=5),
    st.one_of(st.binary(max_size=40), st.lists(st.floats(width=32), max_size=6)),
)
def test_fuzz_odd_shapes_and_values(dtype: int, dims: list[int], values: object) -> None:
    proto = tensor_pb2.TensorProto(dtype=dtype)
    for size in dims:
        proto.tensor_shape.dim.add(size=size)
    if isinstance(values, bytes):
        proto.tensor_content = values
    else:
        proto.float_val.extend(values)  # type: ignore[arg-type]
        proto.int_val.extend(int(v) if abs(v) < 2**31 else 0 for v in values)  # type: ignore[union-attr]
    with contextlib.suppress(ServalError):
        decode_tensor("x", proto)
