"""ModelInferRequest -> InferenceRequest and InferenceResponse -> ModelInferResponse.

Raw contents are read with ``np.frombuffer`` (no copy); each datatype's raw layout is
little-endian, row-major, without padding; BOOL is one byte per element and a BYTES element is
a 4-byte little-endian length followed by its bytes. Responses always use
``raw_output_contents``, as Triton does. Every way a request can be malformed raises
``InvalidInputError`` naming the input and the problem.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, MutableMapping, Sequence
from typing import Any

import numpy as np

from serval.core.errors import InvalidInputError
from serval.core.tensors.datatypes import DataType
from serval.core.tensors.raw import decode_raw, encode_raw
from serval.core.tensors.shapes import check_shape
from serval.core.types import (
    InferenceRequest,
    InferenceResponse,
    Parameters,
    ParameterValue,
    RequestedOutput,
    Tensor,
)
from serval.protocols.grpc.generated import grpc_service_pb2 as pb
from serval.protocols.oip.parameters import (
    refuse_shared_memory,
    take_binary_data,
    take_request_parameters,
)

# The InferTensorContents member that carries each datatype (FP16 has none: raw only).
CONTENTS_FIELD: dict[DataType, str] = {
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
# Datatypes narrower than their contents member, whose values must be range-checked.
_RANGE: dict[DataType, tuple[int, int]] = {
    DataType.UINT8: (0, 2**8 - 1),
    DataType.UINT16: (0, 2**16 - 1),
    DataType.INT8: (-(2**7), 2**7 - 1),
    DataType.INT16: (-(2**15), 2**15 - 1),
}
_INT64_MIN, _INT64_MAX, _UINT64_MAX = -(2**63), 2**63 - 1, 2**64 - 1


# -- parameters ------------------------------------------------------------------------------


def decode_parameters(
    params: Mapping[str, pb.InferParameter], *, where: str
) -> dict[str, ParameterValue]:
    """A parameter map as plain values: inference parameters, and a load request's
    (``ModelRepositoryParameter`` has the same ``parameter_choice``), which the control plane
    then validates."""
    decoded: dict[str, ParameterValue] = {}
    for key, param in params.items():
        choice = param.WhichOneof("parameter_choice")
        if choice is None:
            raise InvalidInputError(f"{where}: parameter {key!r} has no value")
        decoded[key] = getattr(param, choice)
    return decoded


def encode_parameters(params: Parameters, target: MutableMapping[str, pb.InferParameter]) -> None:
    for key, value in params.items():
        param = target[key]
        if isinstance(value, bool):
            param.bool_param = value
        elif isinstance(value, int):
            if _INT64_MIN <= value <= _INT64_MAX:
                param.int64_param = value
            elif 0 <= value <= _UINT64_MAX:
                param.uint64_param = value
            else:
                param.string_param = str(value)
        elif isinstance(value, float):
            param.double_param = value
        else:
            param.string_param = str(value)


# -- request ---------------------------------------------------------------------------------


def decode_request(message: pb.ModelInferRequest) -> InferenceRequest:
    """The core request for ``message``; raises ``InvalidInputError`` if it is malformed."""
    if not message.model_name:
        raise InvalidInputError("model_name is empty")
    # Before the data checks, which would report a shared-memory tensor as one without data.
    for tensor in message.inputs:
        if tensor.parameters:
            refuse_shared_memory(tensor.parameters, f"input {tensor.name!r}")
    for requested in message.outputs:
        if requested.parameters:
            refuse_shared_memory(requested.parameters, f"output {requested.name!r}")
    raw = message.raw_input_contents
    if raw:
        typed = [i.name for i in message.inputs if i.HasField("contents")]
        if typed:
            raise InvalidInputError(
                f"raw_input_contents is set, so no input may set contents; "
                f"input(s) {', '.join(repr(n) for n in typed)} do"
            )
        if len(raw) != len(message.inputs):
            raise InvalidInputError(
                f"raw_input_contents has {len(raw)} entries for {len(message.inputs)} inputs; "
                f"give one entry per input, in the order of inputs"
            )
    inputs = []
    for index, tensor in enumerate(message.inputs):
        where = f"input {tensor.name!r}"
        datatype = DataType.parse(tensor.datatype, field=f"{where}: datatype")
        shape = _shape(tensor.shape, where=where)
        if raw:
            data = decode_raw(raw[index], datatype, shape, tensor.name)
        else:
            data = decode_contents(tensor.contents, datatype, shape, where=where)
        parameters = decode_parameters(tensor.parameters, where=where) if tensor.parameters else {}
        inputs.append(Tensor(tensor.name, datatype, data, parameters))
    outputs = None
    if message.outputs:
        outputs = []
        for output in message.outputs:
            where = f"output {output.name!r}"
            output_parameters = decode_parameters(output.parameters, where=where)
            take_binary_data(output_parameters)  # REST's; here every output is raw bytes
            outputs.append(RequestedOutput(output.name, output_parameters))
    parameters = decode_parameters(message.parameters, where="request")
    request = InferenceRequest(
        model_name=message.model_name,
        inputs=inputs,
        model_version=message.model_version or None,
        id=message.id or None,
        parameters=parameters,
        outputs=outputs,
    )
    take_request_parameters(request, parameters)  # Triton's `timeout` (µs) and `priority`
    return request


def _shape(dims: Sequence[int], *, where: str) -> tuple[int, ...]:
    if any(dim < 0 for dim in dims):
        raise InvalidInputError(f"{where}: shape {list(dims)} has a negative dimension")
    check_shape(dims, where)
    return tuple(dims)


def _reshape(
    flat: np.ndarray[Any, Any], shape: tuple[int, ...], *, where: str
) -> np.ndarray[Any, Any]:
    try:
        return flat.reshape(shape)
    except ValueError as exc:  # e.g. a dimension numpy cannot represent
        raise InvalidInputError(f"{where}: cannot use shape {list(shape)}: {exc}") from exc


def decode_contents(
    contents: pb.InferTensorContents, datatype: DataType, shape: tuple[int, ...], *, where: str
) -> np.ndarray[Any, Any]:
    """An array of ``shape`` from the typed member that matches ``datatype``."""
    count = math.prod(shape)
    member = CONTENTS_FIELD.get(datatype)
    present = [field.name for field, _ in contents.ListFields()]
    if member is None:
        if count == 0 and not present:
            return np.empty(shape, dtype=datatype.numpy_dtype)
        raise InvalidInputError(
            f"{where}: {datatype} has no typed contents member; send it in raw_input_contents"
        )
    if not present and count:
        raise InvalidInputError(
            f"{where}: no data; set contents.{member} or give the request raw_input_contents"
        )
    wrong = [name for name in present if name != member]
    if wrong:
        raise InvalidInputError(
            f"{where}: datatype {datatype} takes its data in contents.{member}, "
            f"received contents.{', contents.'.join(wrong)}"
        )
    values = getattr(contents, member)
    if len(values) != count:
        raise InvalidInputError(
            f"{where}: contents.{member} holds {len(values)} elements but shape "
            f"{list(shape)} needs {count}"
        )
    if datatype is DataType.BYTES:
        flat = np.empty(count, dtype=np.object_)
        flat[:] = list(values)
        return _reshape(flat, shape, where=where)
    dtype = datatype.numpy_dtype
    bounds = _RANGE.get(datatype)
    if bounds is not None:
        wide = np.fromiter(values, dtype=np.int64, count=count)
        low, high = bounds
        if count and (wide.min() < low or wide.max() > high):
            raise InvalidInputError(
                f"{where}: a value in contents.{member} is outside the range of {datatype} "
                f"[{low}, {high}]"
            )
        return _reshape(wide.astype(dtype), shape, where=where)
    return _reshape(np.fromiter(values, dtype=dtype, count=count), shape, where=where)


# -- response --------------------------------------------------------------------------------


def encode_response(response: InferenceResponse) -> pb.ModelInferResponse:
    """The wire response, with every output in ``raw_output_contents``."""
    message = pb.ModelInferResponse(
        model_name=response.model_name,
        model_version=response.model_version or "",
        id=response.id or "",
    )
    encode_parameters(response.parameters, message.parameters)
    for tensor in response.outputs:
        output = message.outputs.add(
            name=tensor.name, datatype=tensor.datatype.value, shape=tensor.data.shape
        )
        if tensor.parameters:
            encode_parameters(tensor.parameters, output.parameters)
        message.raw_output_contents.append(encode_raw(tensor.data, tensor.datatype))
    return message
