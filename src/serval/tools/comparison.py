"""Sample rows to check a new version on, and how far its outputs are from the old one's."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from serval.core.errors import ToolError


def sample_rows(rows_file: Path | None, n_features: int, count: int, seed: int = 0) -> np.ndarray:
    """Rows from a ``.npy`` file, or ``count`` generated standard-normal rows (FP64)."""
    if rows_file is None:
        return np.random.default_rng(seed).standard_normal((count, n_features))
    try:
        rows = np.load(rows_file, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ToolError(f"cannot read rows from {rows_file}: {exc}") from exc
    if rows.ndim == 1:
        rows = rows.reshape(1, -1)
    if rows.ndim != 2 or (n_features > 0 and rows.shape[1] != n_features):
        raise ToolError(
            f"{rows_file} holds an array of shape {list(rows.shape)}; expected [rows, {n_features}]"
        )
    if rows.dtype.kind not in "fiub":
        raise ToolError(f"{rows_file} holds {rows.dtype} values; expected numbers")
    result: np.ndarray = rows.astype(np.float64)
    return result


def max_differences(
    expected: Mapping[str, np.ndarray[Any, Any]], actual: Mapping[str, np.ndarray[Any, Any]]
) -> dict[str, float]:
    """Per output, the largest absolute difference; labels that differ count as infinite."""
    differences = {}
    for name, want in expected.items():
        got = actual.get(name)
        if got is None or np.shape(got) != np.shape(want):
            differences[name] = float("inf")
        elif want.dtype.kind in "OSU" or got.dtype.kind in "OSU":
            differences[name] = 0.0 if np.array_equal(_text(want), _text(got)) else float("inf")
        elif want.size == 0:
            differences[name] = 0.0
        else:
            delta = np.abs(want.astype(np.float64) - got.astype(np.float64))
            differences[name] = float(np.nanmax(delta))
    return differences


def _text(array: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """Labels as ``str`` whatever their source (BYTES tensors hold ``bytes``)."""
    if array.dtype.kind != "O":
        return array.astype(str)
    texts = [v.decode() if isinstance(v, bytes) else str(v) for v in array.ravel()]
    return np.array(texts).reshape(array.shape)
