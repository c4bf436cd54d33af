"""The Open Inference Protocol's raw tensor encoding, shared by REST's binary extension and
gRPC's ``raw_input_contents`` / ``raw_output_contents``.

Elements are little-endian and row-major; BOOL is one byte; each BYTES element is a 4-byte
little-endian length followed by its bytes.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from typing import Any

import numpy as np

from serval.core.errors import InvalidInputError
from serval.core.tensors.datatypes import DataType

_LENGTH = struct.Struct("<I")


def element_count(shape: Sequence[int]) -> int:
    return math.prod(shape)


def decode_raw(
    data: bytes | memoryview, datatype: DataType, shape: Sequence[int], name: str
) -> np.ndarray[Any, Any]:
    """Raw bytes -> array of ``shape`` (non-negative dimensions: the adapters check them).
    Fixed-size types are views on ``data`` (no copy)."""
    count = element_count(shape)
    if datatype is DataType.BYTES:
        return _reshape(_decode_bytes(data, count, name), shape, name)
    dtype = datatype.numpy_dtype.newbyteorder("<")
    expected = count * dtype.itemsize
    if len(data) != expected:
        raise InvalidInputError(
            f"input {name!r}: {datatype} shape {list(shape)} needs {expected} bytes, "
            f"received {len(data)}"
        )
    if datatype is DataType.BOOL:
        octets = np.frombuffer(data, dtype=np.uint8)
        if count and octets.max() > 1:  # any non-zero byte means true
            return _reshape(octets != 0, shape, name)
    return _reshape(np.frombuffer(data, dtype=dtype), shape, name)


def _reshape(flat: np.ndarray[Any, Any], shape: Sequence[int], name: str) -> np.ndarray[Any, Any]:
    try:
        return flat.reshape(shape)
    except ValueError as exc:  # e.g. a dimension numpy cannot represent
        raise InvalidInputError(f"input {name!r}: cannot use shape {list(shape)}: {exc}") from exc


def _decode_bytes(data: bytes | memoryview, count: int, name: str) -> np.ndarray[Any, Any]:
    view = memoryview(data)
    # Elements are collected in a list that grows with the data actually parsed: allocating
    # ``count`` slots first would let a shape of [2**31] with 4 bytes of data take 16 GiB.
    items: list[bytes] = []
    offset = 0
    for index in range(count):
        if offset + 4 > len(view):
            raise InvalidInputError(
                f"input {name!r}: BYTES data ends after {index} of {count} elements"
            )
        (length,) = _LENGTH.unpack_from(view, offset)
        offset += 4
        if offset + length > len(view):
            raise InvalidInputError(
                f"input {name!r}: BYTES element {index} declares {length} bytes but only "
                f"{len(view) - offset} remain"
            )
        items.append(bytes(view[offset : offset + length]))
        offset += length
    if offset != len(view):
        raise InvalidInputError(
            f"input {name!r}: {len(view) - offset} bytes left over after {count} BYTES elements"
        )
    out = np.empty(count, dtype=np.object_)
    out[:] = items
    return out


def encode_raw(data: np.ndarray[Any, Any], datatype: DataType) -> bytes:
    """Array -> raw bytes in the protocol's encoding."""
    if datatype is DataType.BYTES:
        parts = []
        for item in data.reshape(-1):
            value = _as_bytes(item)
            parts.append(_LENGTH.pack(len(value)))
            parts.append(value)
        return b"".join(parts)
    dtype = datatype.numpy_dtype.newbyteorder("<")
    return np.ascontiguousarray(data, dtype=dtype).tobytes()


def _as_bytes(item: object) -> bytes:
    if isinstance(item, bytes):
        return item
    if isinstance(item, bytearray | memoryview):
        return bytes(item)
    return str(item).encode("utf-8")
