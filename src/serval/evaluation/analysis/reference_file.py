"""Reading the reference Parquet file into columns (pyarrow: the ``monitoring`` extra, imported
only when a model's reference is loaded)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from serval.evaluation.analysis.reference import Column, ColumnKind, ReferenceFileError
from serval.evaluation.analysis.row_values import as_categories


class ReferenceTable:
    """The reference file's columns, by name in file order, converted on demand."""

    def __init__(self, path: Path, table: pa.Table) -> None:
        self._where = f"reference {path.name}"
        self._table = table

    def __contains__(self, name: object) -> bool:
        return name in self._table.column_names

    def __iter__(self) -> Iterator[str]:
        return iter(self._table.column_names)

    def column(self, name: str, kind: ColumnKind | None = None) -> Column:
        """Column ``name`` without its missing values, as ``kind`` (None: as its type says:
        numbers are numeric; strings, categories and booleans categorical).

        Raises ReferenceFileError naming the column when its type is neither or it holds no
        values."""
        data = self._table.column(name)
        kind = kind or self._kind(name, data.type)
        if kind == "numeric":
            if not _is_number(data.type):
                raise ReferenceFileError(
                    f"{self._where}: column {name!r} is {data.type}, not numbers"
                )
            numbers = pc.cast(data, pa.float64()).to_numpy(zero_copy_only=False)
            values = numbers[~np.isnan(numbers)]
        else:
            categories = as_categories(np.array(data.to_pylist(), dtype=object))
            values = categories[np.array([value is not None for value in categories], bool)]
        if not len(values):
            raise ReferenceFileError(f"{self._where}: column {name!r} has no values (all null)")
        return Column(name, kind, values)

    def _kind(self, name: str, datatype: pa.DataType) -> ColumnKind:
        if _is_number(datatype):
            return "numeric"
        if (
            pa.types.is_string(datatype)
            or pa.types.is_large_string(datatype)
            or pa.types.is_boolean(datatype)
            or pa.types.is_dictionary(datatype)
        ):
            return "categorical"
        raise ReferenceFileError(
            f"{self._where}: column {name!r} is {datatype}; drift compares numbers and "
            "categories (strings, booleans, dictionary-encoded)"
        )


def read_columns(path: Path) -> ReferenceTable:
    """The columns of the Parquet file at ``path``.

    Raises ReferenceFileError naming the file when it is missing, not Parquet or has no rows."""
    where = f"reference {path.name}"
    if not path.is_file():
        raise ReferenceFileError(f"{where}: no such file in the model's folder ({path})")
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        raise ReferenceFileError(f"{where}: cannot be read as Parquet: {exc}") from exc
    if table.num_rows == 0:
        raise ReferenceFileError(f"{where}: the file has no rows")
    return ReferenceTable(path, table)


def _is_number(datatype: pa.DataType) -> bool:
    return bool(
        pa.types.is_integer(datatype)
        or pa.types.is_floating(datatype)
        or pa.types.is_decimal(datatype)
    )
