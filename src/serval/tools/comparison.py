"""Sample rows to check a new version on, and how far its outputs are from the old one's."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from serval.core.errors import ToolError
from serval.core.tensors.datatypes import DataType
from serval.core.types import TensorSpec

VARIABLE_SIZE = 4  # generated size of a variable dimension after the first (the batch)


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


def sample_tensors(
    specs: Sequence[TensorSpec], rows_file: Path | None, count: int, seed: int = 0
) -> dict[str, np.ndarray]:
    """One sample array per input of a tensor model: ``count`` rows of each (its first
    dimension; other variable dimensions are ``VARIABLE_SIZE``), standard-normal for floats
    and small integers otherwise, or the rows of ``rows_file`` for a model with one input."""
    blocked = [spec.name for spec in specs if spec.datatype is DataType.BYTES]
    if blocked:
        raise ToolError(
            f"cannot generate sample values for the BYTES input(s) {', '.join(blocked)}, so "
            f"the converted model cannot be checked"
        )
    if rows_file is not None:
        if len(specs) != 1:
            raise ToolError("--rows works with one-input models only")
        return {specs[0].name: _rows_for(specs[0], rows_file)}
    rng = np.random.default_rng(seed)
    feeds = {}
    for spec in specs:
        shape = [
            dim if dim > 0 else (count if index == 0 else VARIABLE_SIZE)
            for index, dim in enumerate(spec.shape)
        ]
        dtype = spec.datatype.numpy_dtype
        if np.issubdtype(dtype, np.floating):
            feeds[spec.name] = rng.standard_normal(shape).astype(dtype)
        elif dtype == np.bool_:
            feeds[spec.name] = rng.integers(0, 2, shape).astype(bool)
        else:
            feeds[spec.name] = rng.integers(0, 10, shape).astype(dtype)
    return feeds


def _rows_for(spec: TensorSpec, rows_file: Path) -> np.ndarray:
    try:
        rows = np.load(rows_file, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ToolError(f"cannot read rows from {rows_file}: {exc}") from exc
    if not spec.accepts_shape(rows.shape):
        raise ToolError(
            f"{rows_file} holds an array of shape {list(rows.shape)}; input {spec.name!r} "
            f"takes {list(spec.shape)}"
        )
    if rows.dtype.kind not in "fiub":
        raise ToolError(f"{rows_file} holds {rows.dtype} values; expected numbers")
    result: np.ndarray = rows.astype(spec.datatype.numpy_dtype)
    return result
