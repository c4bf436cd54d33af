"""Feature values as an online store holds them (decimal text: ``b"31"``, ``b"5.2e4"``) turned
into a matrix of a model input's datatype, vectorised: numpy casts the whole matrix at once
(with Python's own ``float``/``int`` rules, so a value is read the same way on every path),
and only a matrix that fails is walked value by value to say which value is wrong.

A float datatype takes any finite number in its range; an integer datatype takes whole numbers
in its range, written as integers (``3``) or not (``3.0``, ``5.2e4``). Integers are parsed as
integers first, so that values beyond 2**53 stay exact.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from serval.core.tensors.datatypes import DataType

Array = np.ndarray[Any, Any]

# The input datatypes features can fill: numbers (BOOL and BYTES are not).
NUMERIC_DATATYPES = frozenset(
    {
        DataType.FP16,
        DataType.FP32,
        DataType.FP64,
        DataType.INT8,
        DataType.INT16,
        DataType.INT32,
        DataType.INT64,
        DataType.UINT8,
        DataType.UINT16,
        DataType.UINT32,
        DataType.UINT64,
    }
)


class BadFeatureValueError(ValueError):
    """The value at ``(row, column)`` of the matrix is not a number of the datatype."""

    def __init__(self, row: int, column: int, value: bytes, reason: str) -> None:
        super().__init__(f"{value!r} {reason}")
        self.row = row
        self.column = column
        self.value = value
        self.reason = reason


def parse_values(texts: Array, datatype: DataType) -> Array:
    """``texts`` (a 2-D object array of decimal text, ``bytes``) as numbers of ``datatype``.
    Raises ``BadFeatureValueError`` for the first value that is not one (row-major order)."""
    dtype = datatype.numpy_dtype
    try:
        parsed = (
            _parse_integers(texts, dtype) if dtype.kind in "iu" else _parse_floats(texts, dtype)
        )
    except (ValueError, TypeError, OverflowError):
        parsed = None
    if parsed is None:
        _raise_first_bad(texts, datatype)
        raise AssertionError("numpy refused a matrix whose every value parses")  # pragma: no cover
    return parsed


def check_value(value: float, datatype: DataType) -> str | None:
    """Why ``value`` (a number, e.g. a default) is not one of ``datatype``; None when it is."""
    dtype: Any = datatype.numpy_dtype
    if dtype.kind in "iu":
        if not np.isfinite(value) or value != int(value):
            return f"is not an integer ({datatype.value})"
        return None if _int_in_range(int(value), dtype) else f"is out of range for {datatype.value}"
    largest = float(np.finfo(dtype).max)
    if not np.isfinite(value):
        return "is not a finite number"
    return None if -largest <= value <= largest else f"is out of range for {datatype.value}"


def _parse_floats(texts: Array, dtype: np.dtype[Any]) -> Array | None:
    values = texts.astype(np.float64)
    info = np.finfo(dtype)
    # NaN fails both comparisons, so it is refused with the infinities.
    if not bool(np.all((values >= -info.max) & (values <= info.max))):
        return None
    return values.astype(dtype, copy=False)


def _parse_integers(texts: Array, dtype: np.dtype[Any]) -> Array | None:
    info = np.iinfo(dtype)
    wide = np.uint64 if dtype.kind == "u" else np.int64
    try:
        values = texts.astype(wide)
    except (ValueError, TypeError, OverflowError):
        # Some value is written as a float ("3.0", "5.2e4"): whole numbers are still integers.
        floats = texts.astype(np.float64)
        if not bool(np.all(np.isfinite(floats) & (floats == np.trunc(floats)))):
            return None
        if not bool(np.all((floats >= float(info.min)) & (floats <= float(info.max)))):
            return None
        return floats.astype(dtype)
    if dtype != np.dtype(wide) and not bool(np.all((values >= info.min) & (values <= info.max))):
        return None
    return values.astype(dtype, copy=False)


def _raise_first_bad(texts: Array, datatype: DataType) -> None:
    """The slow path, taken only for a matrix numpy refused: find the value and say why."""
    integer = datatype.numpy_dtype.kind in "iu"
    for (row, column), text in np.ndenumerate(texts):
        value = text if isinstance(text, bytes) else str(text).encode()
        reason = _integer_reason(value, datatype) if integer else _float_reason(value, datatype)
        if reason is not None:
            raise BadFeatureValueError(row, column, value, reason)


def _float_reason(value: bytes, datatype: DataType) -> str | None:
    try:
        number = float(value)
    except ValueError:
        return "is not a number"
    return check_value(number, datatype)


def _integer_reason(value: bytes, datatype: DataType) -> str | None:
    try:
        whole = int(value)
    except ValueError:
        try:
            number = float(value)
        except ValueError:
            return "is not a number"
        return check_value(number, datatype)
    return (
        None
        if _int_in_range(whole, datatype.numpy_dtype)
        else (f"is out of range for {datatype.value}")
    )


def _int_in_range(value: int, dtype: np.dtype[Any]) -> bool:
    info = np.iinfo(dtype)
    return int(info.min) <= value <= int(info.max)
