"""JSON tensor data <-> numpy, strict about what a client may send.

numpy alone would turn "1.5" into 1.5 or 300 into an INT8 of 44; a client mistake must be a 400
that names the tensor instead. Outputs go the other way through ``array_to_json``, which hands
orjson only dtypes it serialises (``json_ready``).
"""

from __future__ import annotations

import base64
import binascii
import math
from typing import Any

import numpy as np
import orjson

from serval.core.errors import InvalidInputError
from serval.core.tensors.datatypes import DataType

_SUM = np.add.reduce
_INTEGER_KINDS = frozenset("biu")
_NUMBER_KINDS = frozenset("iuf")


def json_to_array(data: Any, datatype: DataType, what: str) -> np.ndarray[Any, Any]:
    """A (nested) JSON list -> array of ``datatype``; its shape is the nesting's shape."""
    if datatype is DataType.BYTES:
        return _bytes_array(data, what)
    if datatype is DataType.FP16:
        raise InvalidInputError(
            f"{what}: FP16 data must be sent in binary (the binary tensor data extension)"
        )
    try:
        raw = np.array(data)
    except (ValueError, TypeError) as exc:
        raise InvalidInputError(f"{what}: data is not a regular (nested) list: {exc}") from exc
    kind = raw.dtype.kind
    if raw.size == 0:
        return raw.astype(datatype.numpy_dtype)
    if datatype is DataType.BOOL:
        if kind not in _INTEGER_KINDS:
            raise InvalidInputError(
                f"{what}: BOOL data must be true/false, received {_sample(raw)}"
            )
        return raw.astype(np.bool_)
    if kind not in _NUMBER_KINDS:
        raise InvalidInputError(f"{what}: {datatype} data must be numbers, received {_sample(raw)}")
    target = datatype.numpy_dtype
    if target.kind in "iu" and kind == "f" and _all_python_ints(data):
        # Integers beyond int64 (UINT64's upper half) made numpy fall back to float64.
        return _exact_integers(data, datatype, what)
    if target.kind in "iu":
        if kind == "f" and not (np.all(np.isfinite(raw)) and np.all(raw == np.floor(raw))):
            raise InvalidInputError(f"{what}: {datatype} data must be integers")
        info = np.iinfo(target)  # type: ignore[type-var]
        if raw.min() < info.min or raw.max() > info.max:
            raise InvalidInputError(
                f"{what}: a value is outside the range of {datatype} ({info.min}..{info.max})"
            )
    converted = raw.astype(target)
    if (
        kind == "f"
        and target.itemsize < raw.dtype.itemsize
        and not math.isfinite(_SUM(converted, axis=None, dtype=np.float64))
    ):
        # JSON has no infinities (orjson refuses them), so an infinity here is an overflow. One
        # reduction in float64 (it cannot overflow on finite FP32 values) finds it cheaply.
        limit = np.finfo(target).max  # type: ignore[type-var]
        raise InvalidInputError(
            f"{what}: a value is outside the range of {datatype} (magnitude at most {limit:g})"
        )
    return converted


def _all_python_ints(data: Any) -> bool:
    if isinstance(data, list):
        return all(_all_python_ints(item) for item in data)
    return isinstance(data, int) and not isinstance(data, bool)


def _exact_integers(data: Any, datatype: DataType, what: str) -> np.ndarray[Any, Any]:
    try:
        return np.array(data, dtype=datatype.numpy_dtype)
    except OverflowError as exc:
        raise InvalidInputError(f"{what}: a value is outside the range of {datatype}") from exc


_KIND_NAMES = {"b": "booleans", "U": "strings", "S": "strings", "O": "mixed values"}


def _sample(raw: np.ndarray[Any, Any]) -> str:
    return _KIND_NAMES.get(raw.dtype.kind, str(raw.dtype))


def _bytes_array(data: Any, what: str) -> np.ndarray[Any, Any]:
    converted = _to_bytes(data, what)
    if isinstance(converted, bytes):
        array = np.empty((), dtype=np.object_)
        array[()] = converted
        return array
    try:
        shaped = np.array(converted, dtype=np.object_)
    except ValueError as exc:
        raise InvalidInputError(f"{what}: data is not a regular (nested) list: {exc}") from exc
    if shaped.size and not all(isinstance(item, bytes) for item in shaped.reshape(-1)):
        raise InvalidInputError(f"{what}: data is not a regular (nested) list of strings")
    return shaped


def _to_bytes(data: Any, what: str) -> Any:
    if isinstance(data, str):
        return data.encode("utf-8")
    if isinstance(data, list):
        return [_to_bytes(item, what) for item in data]
    if isinstance(data, dict) and set(data) == {"b64"} and isinstance(data["b64"], str):
        try:
            return base64.b64decode(data["b64"], validate=True)
        except binascii.Error as exc:
            raise InvalidInputError(f"{what}: invalid base64: {exc}") from exc
    raise InvalidInputError(f"{what}: BYTES data must be strings, received {data!r:.60}")


def array_to_json(data: np.ndarray[Any, Any], datatype: DataType, *, b64: bool = False) -> Any:
    """Array -> what ``orjson.dumps(..., option=OPT_SERIALIZE_NUMPY)`` writes as nested lists:
    numbers stay a contiguous numpy array (so FP32 keeps its short form); BYTES become text (or
    ``{"b64": ...}``)."""
    if datatype is DataType.BYTES:
        return _bytes_to_json(data.tolist(), b64)
    if data.ndim == 0:
        return data.item()
    if datatype is DataType.FP16:
        return data.astype(np.float32)  # orjson has no float16
    return json_ready(data)


def json_ready(data: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """A contiguous array whose dtype is numpy's canonical one for its kind and size.

    onnxruntime returns INT64 as ``numpy.longlong`` (and may return ``ulonglong``): equal to
    int64 as a dtype, but a distinct scalar type that orjson refuses, so indexing such an array
    (V1 rows) made a response fail. Same kind and size: a view, no copy.
    """
    data = np.ascontiguousarray(data)
    canonical = _CANONICAL.get((data.dtype.kind, data.dtype.itemsize))
    if canonical is None or data.dtype.type is canonical.type:
        return data  # canonical, or no protocol datatype (float128): json_default writes it
    return data.view(canonical)


_CANONICAL: dict[tuple[str, int], np.dtype[Any]] = {
    (dtype.kind, dtype.itemsize): dtype
    for dtype in map(
        np.dtype,
        (
            np.bool_,
            np.int8,
            np.int16,
            np.int32,
            np.int64,
            np.uint8,
            np.uint16,
            np.uint32,
            np.uint64,
            np.float16,
            np.float32,
            np.float64,
        ),
    )
}


def json_default(value: Any) -> Any:
    """orjson's ``default``: a numpy scalar or array it does not write natively (called only
    for those, so free on the common path)."""
    if isinstance(value, np.ndarray):
        return value.astype(np.float64) if value.dtype.kind == "f" else value.tolist()
    if isinstance(value, np.generic):
        item = value.item()  # float128's item() is itself
        return float(item) if isinstance(item, np.floating) else item
    raise TypeError(f"Type is not JSON serializable: {type(value).__name__}")


def dumps_json(content: Any) -> bytes:
    """``content`` (numpy arrays and scalars included) as JSON bytes; NaN and infinities are
    written as null (orjson's behaviour)."""
    return orjson.dumps(content, default=json_default, option=orjson.OPT_SERIALIZE_NUMPY)


def _bytes_to_json(item: Any, b64: bool) -> Any:
    if isinstance(item, list):
        return [_bytes_to_json(element, b64) for element in item]
    value = item if isinstance(item, bytes) else str(item).encode("utf-8")
    if b64:
        return {"b64": base64.b64encode(value).decode("ascii")}
    return value.decode("utf-8", errors="replace")
