"""Open Inference Protocol REST bodies <-> core types, JSON and binary tensor data both ways.

Binary extension (Triton's ``binary_tensor_data``): the body is a JSON header of
``Inference-Header-Content-Length`` bytes followed by raw tensors in ``inputs`` order, each
announced by its ``binary_data_size`` parameter.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from serval.core.errors import InvalidInputError
from serval.core.tensors.content_types import CONTENT_TYPE
from serval.core.tensors.datatypes import DataType
from serval.core.tensors.raw import decode_raw, element_count, encode_raw
from serval.core.tensors.shapes import check_shape
from serval.core.types import (
    InferenceRequest,
    InferenceResponse,
    ParameterValue,
    RequestedOutput,
    Tensor,
)
from serval.protocols.oip.parameters import (
    BINARY_DATA_SIZE,
    refuse_shared_memory,
    take_binary_data,
    take_request_parameters,
)
from serval.protocols.rest.body import parse_json_object
from serval.protocols.rest.json_tensors import dumps_json, json_to_array

HEADER_LENGTH = "inference-header-content-length"


@dataclass(frozen=True, slots=True)
class EncodedBody:
    body: bytes
    media_type: str
    json_length: int | None  # set when binary tensors follow the JSON header


@dataclass(frozen=True, slots=True)
class BinaryOutputs:
    """Which outputs the client wants as binary data: ``default`` for all (the request's
    ``binary_data_output``), ``chosen`` for those whose ``binary_data`` parameter says."""

    default: bool = False
    chosen: Mapping[str, bool] | None = None

    def binary(self, name: str) -> bool:
        chosen = self.chosen
        if chosen is None:
            return self.default
        return chosen.get(name, self.default)


JSON_OUTPUTS = BinaryOutputs()


def decode_infer_request(
    body: bytes, header_length: str | None, model_name: str, model_version: str | None
) -> tuple[InferenceRequest, BinaryOutputs]:
    """The core request, and how the client wants its outputs encoded. Triton's transport
    and schedule parameters are taken off the request (``protocols.oip.parameters``)."""
    json_part, binary = _split(body, header_length)
    doc = parse_json_object(json_part)
    raw_inputs = doc.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise InvalidInputError("'inputs' must be a non-empty list of tensors")
    offset = 0
    inputs = []
    for index, item in enumerate(raw_inputs):
        tensor, used = _decode_input(item, index, binary, offset)
        offset += used
        inputs.append(tensor)
    if offset != len(binary):
        raise InvalidInputError(
            f"{len(binary) - offset} bytes of binary data follow the inputs that no input's "
            f"binary_data_size accounts for"
        )
    parameters = _parameters(doc.get("parameters"), "parameters")
    outputs, chosen = _requested_outputs(doc.get("outputs"))
    request = InferenceRequest(
        model_name=model_name,
        model_version=model_version,
        inputs=inputs,
        id=_request_id(doc.get("id")),
        parameters=parameters,
        outputs=outputs,
    )
    binary_default = take_request_parameters(request, parameters)
    if not binary_default and chosen is None:
        return request, JSON_OUTPUTS
    return request, BinaryOutputs(binary_default, chosen)


def _split(body: bytes, header_length: str | None) -> tuple[bytes | memoryview, memoryview]:
    if header_length is None:
        return body, memoryview(b"")
    if not (header_length.isascii() and header_length.isdigit()):  # int() refuses '²'
        raise InvalidInputError(
            f"Inference-Header-Content-Length {header_length!r} is not a number"
        )
    length = int(header_length)
    if length == 0:
        raise InvalidInputError(
            "Inference-Header-Content-Length 0 (a raw binary request without JSON header) is "
            "not supported; send a JSON header describing the input"
        )
    if length > len(body):
        raise InvalidInputError(
            f"Inference-Header-Content-Length {length} exceeds the body's {len(body)} bytes"
        )
    view = memoryview(body)
    return view[:length], view[length:]


def _decode_input(item: Any, index: int, binary: memoryview, offset: int) -> tuple[Tensor, int]:
    where = f"inputs[{index}]"
    if not isinstance(item, dict):
        raise InvalidInputError(f"{where} must be an object")
    name = item.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidInputError(f"{where}.name must be a non-empty string")
    what = f"input {name!r}"
    datatype = DataType.parse(item.get("datatype"), field=f"{what} datatype")
    shape = _shape(item.get("shape"), what)
    parameters = _parameters(item.get("parameters"), f"{what} parameters")
    if parameters:
        refuse_shared_memory(parameters, what)  # before the data checks would misreport it
    size = parameters.get(BINARY_DATA_SIZE)
    if size is not None:
        if "data" in item:
            raise InvalidInputError(f"{what}: give either 'data' or binary_data_size, not both")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise InvalidInputError(f"{what}: binary_data_size must be a non-negative integer")
        if offset + size > len(binary):
            raise InvalidInputError(
                f"{what}: binary_data_size is {size} bytes but only {len(binary) - offset} "
                f"bytes of binary data remain (truncated body?)"
            )
        array = decode_raw(binary[offset : offset + size], datatype, shape, name)
        return Tensor(name, datatype, array, parameters), size
    if "data" not in item:
        raise InvalidInputError(f"{what}: has neither 'data' nor a binary_data_size parameter")
    array = json_to_array(item["data"], datatype, what)
    expected = element_count(shape)
    if array.size != expected:
        raise InvalidInputError(
            f"{what}: shape {shape} needs {expected} elements, data has {array.size}"
        )
    return Tensor(name, datatype, array.reshape(shape), parameters), 0


def _shape(value: Any, what: str) -> list[int]:
    if not isinstance(value, list) or not all(
        isinstance(dim, int) and not isinstance(dim, bool) and dim >= 0 for dim in value
    ):
        raise InvalidInputError(f"{what}: shape must be a list of non-negative integers")
    check_shape(value, what)
    return value


def _request_id(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInputError("'id' must be a string")
    return value


def _parameters(value: Any, what: str) -> dict[str, ParameterValue]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidInputError(f"{what} must be an object")
    absent = False
    for key, item in value.items():
        if not isinstance(item, str | int | float | bool):
            if item is None:  # MLServer's types send unset fields as null (headers: null)
                absent = True
                continue
            raise InvalidInputError(f"{what}: {key!r} must be a string, number or boolean")
    if absent:
        return {key: item for key, item in value.items() if item is not None}
    return value


def _requested_outputs(
    value: Any,
) -> tuple[list[RequestedOutput] | None, dict[str, bool] | None]:
    """The requested outputs, and the ``binary_data`` choice of those that make one."""
    if value is None:
        return None, None
    if not isinstance(value, list):
        raise InvalidInputError("'outputs' must be a list")
    outputs = []
    chosen: dict[str, bool] | None = None
    for index, item in enumerate(value):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise InvalidInputError(f"outputs[{index}] must be an object with a string 'name'")
        name = item["name"]
        parameters = _parameters(item.get("parameters"), f"outputs[{index}]")
        if parameters:
            refuse_shared_memory(parameters, f"output {name!r}")
        binary = take_binary_data(parameters)
        if binary is not None:
            if chosen is None:
                chosen = {}
            chosen[name] = binary
        outputs.append(RequestedOutput(name, parameters))
    return outputs, chosen


def encode_infer_response(
    response: InferenceResponse, binary: BinaryOutputs = JSON_OUTPUTS
) -> EncodedBody:
    outputs = []
    chunks = []
    any_binary = binary is not JSON_OUTPUTS  # the common case asks no method per output
    for tensor in response.outputs:
        entry: dict[str, Any] = {
            "name": tensor.name,
            "datatype": tensor.datatype.value,
            "shape": list(tensor.shape),
        }
        # MLServer's content_type (core.tensors.content_types); no other parameter of an
        # output: a model that echoes an input must not answer its binary_data_size.
        if tensor.parameters and CONTENT_TYPE in tensor.parameters:
            entry["parameters"] = {CONTENT_TYPE: tensor.parameters[CONTENT_TYPE]}
        if any_binary and binary.binary(tensor.name):
            raw = encode_raw(tensor.data, tensor.datatype)
            entry["parameters"] = {**entry.get("parameters", {}), BINARY_DATA_SIZE: len(raw)}
            chunks.append(raw)
        else:
            entry["data"] = _json_data(tensor)
        outputs.append(entry)
    doc: dict[str, Any] = {"model_name": response.model_name}
    if response.model_version is not None:
        doc["model_version"] = response.model_version
    if response.id is not None:
        doc["id"] = response.id
    if response.parameters:
        doc["parameters"] = dict(response.parameters)
    doc["outputs"] = outputs
    header = dumps_json(doc)
    if not chunks:
        return EncodedBody(header, "application/json", None)
    return EncodedBody(header + b"".join(chunks), "application/octet-stream", len(header))


def _json_data(tensor: Tensor) -> Any:
    if tensor.datatype is DataType.FP16:
        raise InvalidInputError(
            f"output {tensor.name!r} is FP16, which JSON cannot carry; request it with the "
            f"parameter binary_data: true"
        )
    if tensor.datatype is DataType.BYTES:
        return [
            item.decode("utf-8", errors="replace") if isinstance(item, bytes) else str(item)
            for item in tensor.data.reshape(-1)
        ]
    # orjson serialises contiguous numpy arrays natively (float32 stays short), longlong and
    # the other non-canonical integer dtypes included: json_ready is for rows (V1), not here.
    return np.ascontiguousarray(tensor.data).reshape(-1)
