"""A model's answer to one batch, as the rows written out: the key columns (or ``row``), one
column per output (a fixed-size list column for a vector output), ``model`` and ``version``,
and with ``--on-error skip`` an ``error`` column (null for rows that were scored)."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from serval.core.tensors.datatypes import DataType
from serval.core.tensors.rows import check_rows
from serval.core.types import Tensor, TensorSpec

ROW_COLUMN = "row"
MODEL_COLUMN = "model"
VERSION_COLUMN = "version"
ERROR_COLUMN = "error"


def output_array(tensor: Tensor) -> pa.Array:
    """A tensor of ``n`` rows as an Arrow column of ``n`` values: a vector per row is a
    fixed-size list (nested for more dimensions); text is a string column when it is UTF-8."""
    data = tensor.data
    if data.dtype.kind == "O":
        flat = pa.array(data.reshape(-1).tolist())
        if pa.types.is_binary(flat.type):
            with contextlib.suppress(pa.ArrowInvalid):  # not UTF-8: kept as bytes
                flat = flat.cast(pa.string())
    else:
        flat = pa.array(np.ascontiguousarray(data).reshape(-1))
    for size in reversed(data.shape[1:]):
        flat = pa.FixedSizeListArray.from_arrays(flat, size)
    return flat


def result_columns(
    outputs: Sequence[Tensor], reference: Tensor | None, drop: frozenset[str] = frozenset()
) -> dict[str, pa.Array]:
    """The outputs' columns (but those named in ``drop``: a keyed model returns the key the
    job already passes through). Every output must have the rows of ``reference`` (the first
    input): batch rows and results are joined by position."""
    if reference is not None:
        check_rows(outputs, reference, "output")
    return {t.name: output_array(t) for t in outputs if t.name not in drop}


def result_table(
    passed: dict[str, pa.Array],
    results: dict[str, pa.Array],
    model: str,
    version: int,
    errors: pa.Array | None = None,
) -> pa.Table:
    """``passed`` (key columns or ``row``) then ``results``, ``model``, ``version`` (and
    ``error`` when given)."""
    rows = len(next(iter(passed.values())))
    columns: dict[str, Any] = {**passed, **results}
    columns[MODEL_COLUMN] = pa.repeat(pa.scalar(model, pa.string()), rows)
    columns[VERSION_COLUMN] = pa.repeat(pa.scalar(version, pa.int64()), rows)
    if errors is not None:
        columns[ERROR_COLUMN] = errors
    return pa.table(columns)


def null_results(types: dict[str, pa.DataType], rows: int) -> dict[str, pa.Array]:
    """Columns of ``types`` holding ``rows`` nulls (rows the model failed on)."""
    return {name: pa.nulls(rows, kind) for name, kind in types.items()}


def declared_type(spec: TensorSpec) -> pa.DataType | None:
    """The column type of an output as its metadata declares it (None when a dimension past
    the first is not fixed): the type of null results before any row has been scored."""
    if any(size < 0 for size in spec.shape[1:]):
        return None
    kind: pa.DataType = (
        pa.string()
        if spec.datatype is DataType.BYTES
        else pa.from_numpy_dtype(spec.datatype.numpy_dtype)
    )
    for size in reversed(spec.shape[1:]):
        kind = pa.list_(kind, size)
    return kind
