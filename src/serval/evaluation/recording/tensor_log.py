"""How logged tensors are written into the store: compact JSON (orjson), readable by any SQL
client and by ``serval monitor export``, one document per request's inputs or outputs.

``{"<name>": {"datatype": "FP32", "shape": [2, 3], "data": [flat values]}}``. BYTES values are
written as text (UTF-8; bytes that are not are replaced, the log is for evaluation, not replay).
Encoding runs in the prediction log's writer thread, never on the request path.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from serval.core.feedback import key_text
from serval.core.types import Tensor

_OPTIONS = orjson.OPT_SERIALIZE_NUMPY


@dataclass(frozen=True, slots=True)
class LoggedTensor:
    datatype: str
    shape: tuple[int, ...]
    data: np.ndarray[Any, Any]  # shaped; BYTES as an object array of str


def encode_tensors(tensors: Iterable[Tensor], leave_out: Collection[str] = ()) -> bytes:
    """The JSON document of ``tensors``, without those named in ``leave_out`` (keys)."""
    document: dict[str, dict[str, object]] = {}
    for tensor in tensors:
        if tensor.name in leave_out:
            continue
        data = tensor.data
        values: object
        if data.dtype.kind in "OSU":  # BYTES: text
            values = [_text(value) for value in data.reshape(-1).tolist()]
        else:  # numbers: orjson writes the array itself
            values = data.reshape(-1) if data.flags.c_contiguous else data.ravel()
        document[tensor.name] = {
            "datatype": tensor.datatype.value,
            "shape": data.shape,
            "data": values,
        }
    return orjson.dumps(document, option=_OPTIONS)


def decode_tensors(blob: bytes) -> dict[str, LoggedTensor]:
    """The tensors of a document ``encode_tensors`` wrote, by name."""
    tensors: dict[str, LoggedTensor] = {}
    for name, tensor in orjson.loads(blob).items():
        shape = tuple(int(dim) for dim in tensor["shape"])
        datatype = str(tensor["datatype"])
        if datatype == "BYTES":
            data = np.array(tensor["data"], dtype=object)
        elif datatype == "BOOL":
            data = np.array(tensor["data"], dtype=bool)
        else:
            data = np.asarray(tensor["data"], dtype=np.float64 if "FP" in datatype else None)
        tensors[name] = LoggedTensor(datatype, shape, data.reshape(shape))
    return tensors


def key_texts(tensors: Iterable[Tensor], keys: Collection[str]) -> tuple[str, ...] | None:
    """One text per row naming the row's key (``core.feedback.key_text`` of its value): the
    value of the only key, or the JSON list of every key's values in the order of ``keys``.
    None when no tensor is a key."""
    columns = [_rows(tensor.data) for tensor in tensors if tensor.name in keys]
    if not columns:
        return None
    if len(columns) == 1:
        return tuple(key_text(value) for value in columns[0])
    return tuple(key_text(list(row)) for row in zip(*columns, strict=False))


def _rows(data: np.ndarray[Any, Any]) -> list[Any]:
    """A key tensor's value per row, as JSON values (a list for a key of several values)."""
    values = data.tolist()
    return [_json(value) for value in values]


def _json(value: Any) -> Any:
    if isinstance(value, bytes):
        return _text(value)
    if isinstance(value, list):
        return [_json(item) for item in value]
    return value


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)
