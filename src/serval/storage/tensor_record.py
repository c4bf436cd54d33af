"""A compact binary record of named tensors: the values of the Redis prediction cache, and the
body of a precomputed answer (``serval.storage.precomputed``). Never pickle: what a store holds
must not be able to run code in the server that reads it.

All integers are little-endian. A body is::

    u16 count
    per tensor: u16 len, name (UTF-8)  u8 len, datatype (ASCII, e.g. FP32)
                u8 rank, u32 dims...   then its values:
        numbers (BOOL as one byte): the raw little-endian values, row-major
        BYTES: per value u32 len, bytes

A cache value is ``b"SVT1"`` followed by one body. Numbers decode zero-copy
(``np.frombuffer``: read-only views of the record).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from serval.core.tensors.datatypes import DataType
from serval.core.types import Tensor

MAGIC = b"SVT1"
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_MAX_COUNT = 0xFFFF

Array = np.ndarray[Any, Any]
NamedArray = tuple[str, DataType, Array]


def encode_tensors(tensors: Sequence[Tensor]) -> bytes:
    """The record of ``tensors`` (their names, datatypes, shapes and data; not parameters)."""
    parts = [MAGIC]
    write_body(parts, ((t.name, t.datatype, t.data) for t in tensors))
    return b"".join(parts)


def decode_tensors(data: bytes) -> list[Tensor]:
    """The tensors ``encode_tensors`` wrote; raises ``ValueError`` for anything else."""
    if not data.startswith(MAGIC):
        raise ValueError("not a tensor record (no SVT1 header)")
    view = memoryview(data)
    named, at = read_body(view, len(MAGIC))
    if at != len(view):
        raise ValueError(f"tensor record: {len(view) - at} bytes after the last tensor")
    return [Tensor(name=name, datatype=datatype, data=values) for name, datatype, values in named]


def write_body(parts: list[bytes], named: Iterable[NamedArray]) -> None:
    """Append the body of ``named`` (name, datatype, values) to ``parts``."""
    items = list(named)
    if len(items) > _MAX_COUNT:
        raise ValueError(f"at most {_MAX_COUNT} tensors in a record")
    parts.append(_U16.pack(len(items)))
    for name, datatype, given in items:
        value = np.asarray(given)
        kind = datatype.value.encode()
        if value.ndim > 0xFF:
            raise ValueError(f"{name}: rank {value.ndim} is more than 255")
        parts += [write_text(name), bytes([len(kind)]), kind, bytes([value.ndim])]
        parts.append(b"".join(_U32.pack(d) for d in value.shape))
        if datatype is DataType.BYTES:
            for item in value.reshape(-1):
                data = item if isinstance(item, bytes) else str(item).encode()
                parts += [_U32.pack(len(data)), data]
        else:
            dtype = datatype.numpy_dtype.newbyteorder("<")
            parts.append(np.ascontiguousarray(value, dtype).tobytes())


def read_body(view: memoryview, at: int) -> tuple[list[NamedArray], int]:
    """The tensors of the body at ``view[at:]`` and where it ends; raises ``ValueError`` for
    a body ``write_body`` did not write (truncated, unknown datatype, inconsistent sizes)."""
    try:
        return _read_body(view, at)
    except (struct.error, IndexError) as exc:  # truncated: a read ran past the end
        raise ValueError(f"truncated tensor record ({exc})") from exc


def _read_body(view: memoryview, at: int) -> tuple[list[NamedArray], int]:
    (count,) = _U16.unpack_from(view, at)
    at += _U16.size
    named: list[NamedArray] = []
    for _ in range(count):
        name, at = read_text(view, at)
        size = view[at]
        datatype = DataType(bytes(view[at + 1 : at + 1 + size]).decode("ascii"))
        at += 1 + size
        rank = view[at]
        shape = struct.unpack_from(f"<{rank}I", view, at + 1)
        at += 1 + _U32.size * rank
        items = math.prod(shape)
        if datatype is DataType.BYTES:
            # Each value takes at least its u32 length: a garbage shape cannot allocate more
            # than the record could hold.
            if items * _U32.size > len(view) - at:
                raise ValueError(f"{name}: {items} BYTES values do not fit the record")
            values = np.empty(items, dtype=np.object_)
            for index in range(items):
                (length,) = _U32.unpack_from(view, at)
                at += _U32.size
                if at + length > len(view):
                    raise ValueError(f"{name}: a BYTES value runs past the record")
                values[index] = bytes(view[at : at + length])
                at += length
            named.append((name, datatype, values.reshape(shape)))
        else:
            dtype = datatype.numpy_dtype.newbyteorder("<")
            end = at + items * dtype.itemsize
            if end > len(view):
                raise ValueError(f"{name}: {items} values do not fit the record")
            named.append((name, datatype, np.frombuffer(view[at:end], dtype=dtype).reshape(shape)))
            at = end
    return named, at


def write_text(value: str) -> bytes:
    data = value.encode()
    if len(data) > 0xFFFF:
        raise ValueError("a name of more than 65535 bytes")
    return _U16.pack(len(data)) + data


def read_text(view: memoryview, at: int) -> tuple[str, int]:
    (size,) = _U16.unpack_from(view, at)
    at += _U16.size
    if at + size > len(view):
        raise ValueError("a name runs past the record")
    return bytes(view[at : at + size]).decode(), at + size
