"""``tensorflow.TensorProto`` <-> ``Tensor``.

A request's tensor carries its values either in ``tensor_content`` (raw little-endian,
row-major bytes, read with ``np.frombuffer``) or in the typed field of its dtype
(``float_val``, ``string_val`` ...). As TensorFlow does, a typed field with fewer values than
the shape holds is padded with its last value (``tf.make_tensor_proto`` of a constant sends
one). Responses use the typed fields, as TF Serving does by default, so that clients without
TensorFlow read ``float_val`` and the like directly.
"""

from __future__ import annotations

import math
from typing import Any, cast

import numpy as np

from serval.core.errors import InvalidInputError
from serval.core.tensors.datatypes import DataType
from serval.core.tensors.shapes import check_shape
from serval.core.types import Tensor
from serval.protocols.grpc.generated.tensorflow.core.framework import tensor_pb2, types_pb2
from serval.protocols.oip.tf_serving import DATATYPES, TF_DTYPES

# The most a tensor filled up from fewer values may hold (a few values must not make the
# server allocate without bound): the gRPC port's default message limit.
MAX_FILLED_BYTES = 64 * 2**20
# The typed field of TensorProto that carries each datatype. FP16 travels as its 16 bits in
# half_val.
VALUES_FIELD: dict[DataType, str] = {
    DataType.BOOL: "bool_val",
    DataType.UINT8: "int_val",
    DataType.UINT16: "int_val",
    DataType.UINT32: "uint32_val",
    DataType.UINT64: "uint64_val",
    DataType.INT8: "int_val",
    DataType.INT16: "int_val",
    DataType.INT32: "int_val",
    DataType.INT64: "int64_val",
    DataType.FP16: "half_val",
    DataType.FP32: "float_val",
    DataType.FP64: "double_val",
    DataType.BYTES: "string_val",
}
# dtype enum number -> datatype, and back.
_FROM_ENUM: dict[int, DataType] = {
    types_pb2.DataType.Value(name): datatype for name, datatype in DATATYPES.items()
}
_TO_ENUM: dict[DataType, types_pb2.DataType] = {
    datatype: cast("types_pb2.DataType", number) for number, datatype in _FROM_ENUM.items()
}


def datatype_of(dtype: int, *, what: str) -> DataType:
    """serval's datatype for a TF dtype enum value; ``InvalidInputError`` for one it lacks."""
    datatype = _FROM_ENUM.get(dtype)
    if datatype is None:
        name = types_pb2.DataType.Name(dtype) if dtype in types_pb2.DataType.values() else dtype
        known = ", ".join(TF_DTYPES.values())
        raise InvalidInputError(f"{what}: dtype {name} is not supported; expected one of {known}")
    return datatype


def dtype_of(datatype: DataType) -> types_pb2.DataType:
    """The TF dtype enum value of a serval datatype."""
    return _TO_ENUM[datatype]


def decode_tensor(name: str, proto: tensor_pb2.TensorProto) -> Tensor:
    """The tensor a request sent as ``inputs[name]``."""
    what = f"input {name!r}"
    datatype = datatype_of(proto.dtype, what=what)
    if proto.tensor_shape.unknown_rank:
        raise InvalidInputError(f"{what}: tensor_shape has unknown_rank; send its dimensions")
    shape = tuple(int(dim.size) for dim in proto.tensor_shape.dim)
    if any(size < 0 for size in shape):
        raise InvalidInputError(f"{what}: tensor_shape {list(shape)} has a negative dimension")
    check_shape(shape, what)
    count = math.prod(shape)
    if proto.tensor_content:
        data = _from_content(proto.tensor_content, datatype, count, what)
    else:
        data = _from_values(getattr(proto, VALUES_FIELD[datatype]), datatype, count, what)
    return Tensor(name, datatype, data.reshape(shape))


def _from_content(
    content: bytes, datatype: DataType, count: int, what: str
) -> np.ndarray[Any, Any]:
    if datatype is DataType.BYTES:
        raise InvalidInputError(f"{what}: a DT_STRING tensor sends its values in string_val")
    dtype = datatype.numpy_dtype.newbyteorder("<")
    if len(content) != count * dtype.itemsize:
        raise InvalidInputError(
            f"{what}: tensor_content has {len(content)} bytes; the shape holds {count} "
            f"values of {dtype.itemsize} bytes"
        )
    data = np.frombuffer(content, dtype=dtype)
    return data if dtype.isnative else data.astype(dtype.newbyteorder("="))


def _from_values(values: Any, datatype: DataType, count: int, what: str) -> np.ndarray[Any, Any]:
    sent = len(values)
    if sent > count or (sent == 0 and count > 0):
        raise InvalidInputError(
            f"{what}: {VALUES_FIELD[datatype]} has {sent} values; the shape holds {count}"
        )
    if datatype is DataType.BYTES:
        data = np.empty(sent, dtype=np.object_)
        data[:] = list(values)
    elif datatype is DataType.FP16:
        data = np.array(values, dtype=np.uint16).view(np.float16)
    elif VALUES_FIELD[datatype] == "int_val" and datatype is not DataType.INT32:
        wide = np.array(values, dtype=np.int32)  # int_val carries the narrower integers
        data = wide.astype(datatype.numpy_dtype)
        if not np.array_equal(data, wide):
            raise InvalidInputError(f"{what}: a value is out of range for {TF_DTYPES[datatype]}")
    else:  # the field's own type is the datatype's
        data = np.array(values, dtype=datatype.numpy_dtype)
    if sent < count:  # TensorFlow pads with the last value
        if count * max(data.itemsize, 1) > MAX_FILLED_BYTES:
            raise InvalidInputError(
                f"{what}: {sent} values cannot fill a tensor of {count} elements: send them all"
            )
        data = np.concatenate([data, np.full(count - sent, data[-1], dtype=data.dtype)])
    return data


def encode_tensor(tensor: Tensor, proto: tensor_pb2.TensorProto) -> None:
    """Write ``tensor`` into ``proto`` (a response's ``outputs[name]``)."""
    datatype = tensor.datatype
    proto.dtype = _TO_ENUM[datatype]
    for size in tensor.shape:
        proto.tensor_shape.dim.add(size=size)
    flat = tensor.data.reshape(-1)
    values = getattr(proto, VALUES_FIELD[datatype])
    if datatype is DataType.BYTES:
        values.extend(item.encode() if isinstance(item, str) else bytes(item) for item in flat)
    elif datatype is DataType.FP16:
        values.extend(flat.astype(np.float16).view(np.uint16).tolist())
    else:
        values.extend(flat.tolist())
