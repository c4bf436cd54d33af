"""Which columns feed which model input, decided once from the file's schema before any work.

The rules (docs/batch.md#columns), per model input, first match wins:

1. ``--map input=col1,col2``: exactly those columns.
2. A column with the input's name: a fixed-size list column feeds an input ``[-1, n]``, a plain
   column a 1-D input ``[-1]`` (or ``[-1, 1]``).
3. An input ``[-1, n]`` (only one such input left unmapped): ``--columns a,b,c``, or else every
   column that is neither a key nor used by another input, in file order, when there are ``n``
   of them.

Anything else is a ``BatchInputError`` naming the input, the columns found and what was expected.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from serval.batch.errors import BatchInputError
from serval.core.tensors.datatypes import DataType
from serval.core.types import Tensor, TensorSpec


@dataclass(frozen=True, slots=True)
class InputColumns:
    """One model input and the columns that feed it: ``as_list`` means one list column whose
    values are the rows; else one value per column per row (``[-1, n]``) or a single column
    (``[-1]``)."""

    spec: TensorSpec
    columns: tuple[str, ...]
    as_list: bool = False

    @property
    def one_dimensional(self) -> bool:
        return len(self.spec.shape) == 1


@dataclass(frozen=True, slots=True)
class ColumnMapping:
    """Every model input's columns, and the columns read from the files (inputs and keys)."""

    inputs: tuple[InputColumns, ...]
    keys: tuple[str, ...]

    @property
    def read_columns(self) -> list[str]:
        wanted = [*self.keys, *(c for i in self.inputs for c in i.columns)]
        return list(dict.fromkeys(wanted))

    def describe(self) -> dict[str, list[str]]:
        """input -> columns, for the manifest (a resumed job must map the same way)."""
        return {i.spec.name: list(i.columns) for i in self.inputs}


def map_columns(
    inputs: Sequence[TensorSpec],
    schema: pa.Schema,
    *,
    keys: Sequence[str] = (),
    columns: Sequence[str] | None = None,
    explicit: Mapping[str, Sequence[str]] | None = None,
    source: str = "input",
) -> ColumnMapping:
    """The mapping of ``inputs`` onto ``schema`` (``source`` names the file in errors)."""
    names = list(schema.names)
    explicit = dict(explicit or {})
    _check_named(keys, names, "--key", source)
    known = {spec.name for spec in inputs}
    for name, cols in explicit.items():
        if name not in known:
            raise BatchInputError(
                f"--map {name}=...: the model has no input {name!r} "
                f"(its inputs: {', '.join(sorted(known))})"
            )
        _check_named(cols, names, f"--map {name}", source)
    if columns is not None:
        _check_named(columns, names, "--columns", source)
    mapped: dict[str, InputColumns] = {}
    for spec in inputs:
        if spec.name in explicit:
            mapped[spec.name] = _explicit(spec, tuple(explicit[spec.name]), schema, source)
        elif spec.name in names:
            mapped[spec.name] = _same_name(spec, schema, source)
    rest = [spec for spec in inputs if spec.name not in mapped]
    if rest:
        if len(rest) > 1 or len(rest[0].shape) != 2:
            _unmapped(rest, names, source)
        spec = rest[0]
        used = set(keys) | {c for m in mapped.values() for c in m.columns}
        chosen = tuple(columns) if columns is not None else tuple(n for n in names if n not in used)
        width = spec.shape[1]
        if width != -1 and len(chosen) != width:
            how = (
                "--columns"
                if columns is not None
                else "the columns that are neither keys nor another input's"
            )
            raise BatchInputError(
                f"input {spec.name!r} takes {width} numeric columns (shape {list(spec.shape)}), "
                f"but {how} in {source} are {len(chosen)}: {', '.join(chosen) or 'none'}; "
                f"name them with --columns or --map {spec.name}=col1,col2,..."
            )
        mapped[spec.name] = InputColumns(spec, chosen)
        for column in chosen:
            _check_numeric(spec, column, schema, source)
    return ColumnMapping(tuple(mapped[spec.name] for spec in inputs), tuple(keys))


def _check_named(wanted: Sequence[str], names: list[str], option: str, source: str) -> None:
    missing = [c for c in wanted if c not in names]
    if missing:
        raise BatchInputError(
            f"{option}: column(s) {', '.join(repr(c) for c in missing)} not found in {source} "
            f"(its columns: {', '.join(names)})"
        )


def _explicit(
    spec: TensorSpec, columns: tuple[str, ...], schema: pa.Schema, source: str
) -> InputColumns:
    if len(columns) == 1 and _is_list(schema.field(columns[0]).type):
        return _list_input(spec, columns[0], schema, source)
    rank = len(spec.shape)
    width = 1 if rank == 1 else spec.shape[1] if rank == 2 else None
    if (
        width is None
        or (width != -1 and len(columns) != width)
        or (rank == 1 and len(columns) != 1)
    ):
        raise BatchInputError(
            f"--map {spec.name}: input {spec.name!r} has shape {list(spec.shape)}, so it takes "
            f"{_expected(spec)}; got {len(columns)} column(s): {', '.join(columns)}"
        )
    for column in columns:
        _check_numeric(spec, column, schema, source)
    return InputColumns(spec, columns)


def _same_name(spec: TensorSpec, schema: pa.Schema, source: str) -> InputColumns:
    column = spec.name
    if _is_list(schema.field(column).type):
        return _list_input(spec, column, schema, source)
    if len(spec.shape) == 1 or spec.shape[1:] == (1,):
        _check_numeric(spec, column, schema, source)
        return InputColumns(spec, (column,))
    raise BatchInputError(
        f"input {spec.name!r} has shape {list(spec.shape)}, so it takes {_expected(spec)}; "
        f"column {column!r} of {source} is a single {schema.field(column).type} value per row"
    )


def _list_input(spec: TensorSpec, column: str, schema: pa.Schema, source: str) -> InputColumns:
    kind = schema.field(column).type
    if len(spec.shape) != 2:
        raise BatchInputError(
            f"input {spec.name!r} has shape {list(spec.shape)}, so it takes {_expected(spec)}; "
            f"column {column!r} of {source} holds lists ({kind})"
        )
    size = kind.list_size if pa.types.is_fixed_size_list(kind) else None
    if size is not None and spec.shape[1] not in (-1, size):
        raise BatchInputError(
            f"input {spec.name!r} takes rows of {spec.shape[1]} values, but column {column!r} "
            f"of {source} holds lists of {size} ({kind})"
        )
    _check_element(spec, column, kind.value_type, source)
    return InputColumns(spec, (column,), as_list=True)


def _unmapped(rest: Sequence[TensorSpec], names: list[str], source: str) -> None:
    wanted = "; ".join(f"{s.name!r} {_expected(s)}" for s in rest)
    raise BatchInputError(
        f"cannot tell which columns of {source} feed model input(s) {wanted}; columns found: "
        f"{', '.join(names)}. Name a column after each input, or use --map input=col1,col2"
    )


def _expected(spec: TensorSpec) -> str:
    if len(spec.shape) == 1:
        return "one column of the same name"
    if len(spec.shape) == 2:
        width = "n" if spec.shape[1] == -1 else str(spec.shape[1])
        return f"{width} numeric columns or one column of fixed-size lists"
    return "a shape batch serving cannot build from columns (more than two dimensions)"


def _is_list(kind: pa.DataType) -> bool:
    return bool(
        pa.types.is_fixed_size_list(kind) or pa.types.is_list(kind) or pa.types.is_large_list(kind)
    )


def _check_numeric(spec: TensorSpec, column: str, schema: pa.Schema, source: str) -> None:
    _check_element(spec, column, schema.field(column).type, source)


def _check_element(spec: TensorSpec, column: str, kind: pa.DataType, source: str) -> None:
    numeric = pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)
    text = pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_binary(kind)
    ok = text if spec.datatype is DataType.BYTES else numeric
    if not ok:
        want = "text" if spec.datatype is DataType.BYTES else "numbers"
        raise BatchInputError(
            f"column {column!r} of {source} has type {kind}, but input {spec.name!r} "
            f"({spec.datatype.value}) takes {want}"
        )


def to_tensors(mapping: ColumnMapping, batch: pa.RecordBatch, where: str) -> list[Tensor]:
    """The request tensors for ``batch``; ``where`` (file and first row) names a null in errors."""
    return [_tensor(feed, batch, where) for feed in mapping.inputs]


def _tensor(feed: InputColumns, batch: pa.RecordBatch, where: str) -> Tensor:
    spec = feed.spec
    rows = batch.num_rows
    if spec.datatype is DataType.BYTES:
        values = _column(batch, feed.columns[0], where).to_pylist()
        data = np.empty(rows, dtype=np.object_)
        data[:] = [v.encode() if isinstance(v, str) else v for v in values]
        return Tensor(spec.name, spec.datatype, data if feed.one_dimensional else data[:, None])
    dtype = spec.datatype.numpy_dtype
    if feed.as_list:
        data = _list_values(batch, feed.columns[0], dtype, where)
    elif feed.one_dimensional:
        data = _numbers(_column(batch, feed.columns[0], where), dtype)
    else:
        data = np.empty((rows, len(feed.columns)), dtype=dtype)
        for index, name in enumerate(feed.columns):
            data[:, index] = _numbers(_column(batch, name, where), dtype)
    return Tensor(spec.name, spec.datatype, data)


def _column(batch: pa.RecordBatch, name: str, where: str) -> pa.Array:
    column = batch.column(name)
    if column.null_count:
        row = int(np.flatnonzero(~np.asarray(column.is_valid()))[0])
        raise BatchInputError(f"{where}: column {name!r} has no value (null) at row {row}")
    return column


def _numbers(column: pa.Array, dtype: np.dtype[Any]) -> np.ndarray[Any, Any]:
    return np.asarray(column.to_numpy(zero_copy_only=False), dtype=dtype)


def _list_values(
    batch: pa.RecordBatch, name: str, dtype: np.dtype[Any], where: str
) -> np.ndarray[Any, Any]:
    column = _column(batch, name, where)
    rows = len(column)
    if pa.types.is_fixed_size_list(column.type):
        width = column.type.list_size
    else:  # a variable list column: every row must have the same length
        lengths = np.asarray(column.value_lengths().to_numpy(zero_copy_only=False))
        width = int(lengths[0]) if rows else 0
        if rows and (lengths != width).any():
            row = int(np.flatnonzero(lengths != width)[0])
            raise BatchInputError(
                f"{where}: column {name!r} has a list of {int(lengths[row])} values at row "
                f"{row}, but {width} at row 0: every row needs the same number"
            )
    values = column.flatten()
    if values.null_count:
        raise BatchInputError(f"{where}: column {name!r} has a null inside a list")
    return _numbers(values, dtype).reshape(rows, width)
