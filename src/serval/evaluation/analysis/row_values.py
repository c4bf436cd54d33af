"""One value per row of a logged tensor, as a number or as a category.

Drift and quality compare values that came from different places (a Parquet reference, logged
tensors, ground truth sent as JSON): the same class must read the same from each, so ``1``,
``1.0`` and ``"1"`` are one category, and a missing value is ``None`` (categories) or NaN
(numbers) everywhere.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from serval.evaluation.recording.tensor_log import LoggedTensor

FloatArray = np.ndarray[Any, np.dtype[np.float64]]
ObjectArray = np.ndarray[Any, np.dtype[np.object_]]


def row_values(tensor: LoggedTensor, name: str) -> np.ndarray[Any, Any]:
    """The value per row of a tensor of shape ``[k]`` or ``[k, 1]`` (a scalar: one row).

    Raises ValueError naming the tensor when a row holds several values."""
    data = tensor.data
    if data.ndim == 0:
        return data.reshape(1)
    if data.ndim == 1 or (data.ndim == 2 and data.shape[1] == 1):
        return data.reshape(-1)
    raise ValueError(
        f"{name}: shape {list(data.shape)} holds several values per row (expected [rows] or "
        "[rows, 1])"
    )


def category_text(value: object) -> str | None:
    """The category a value stands for: ``1``, ``1.0`` and ``"1"`` read ``"1"``; booleans
    ``"true"`` / ``"false"``; None, NaN and empty cells are missing (None)."""
    if value is None:
        return None
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        number = float(value)
        if math.isnan(number):
            return None
        return str(int(number)) if number.is_integer() else repr(number)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def as_categories(values: np.ndarray[Any, Any]) -> ObjectArray:
    """``values`` as an object array of category texts (None where missing)."""
    out = np.empty(len(values), dtype=object)
    for index, value in enumerate(values.tolist()):
        out[index] = category_text(value)
    return out


def as_numbers(values: np.ndarray[Any, Any]) -> FloatArray:
    """``values`` as float64, NaN where a value is missing or is text that is not a number."""
    if values.dtype.kind in "biuf":
        return values.astype(np.float64)
    out = np.full(len(values), np.nan, dtype=np.float64)
    for index, value in enumerate(values.tolist()):
        out[index] = _number(value)
    return out


def _number(value: object) -> float:
    if isinstance(value, bool | int | float | np.number | np.bool_):
        return float(value)
    if isinstance(value, str | bytes):
        try:
            return float(value)
        except ValueError:
            return math.nan
    return math.nan
