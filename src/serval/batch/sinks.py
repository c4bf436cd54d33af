"""Output parts: one file per input part, written to a temporary name and renamed into place
when complete, so a part on disk under its name is always whole (what ``--resume`` trusts).

The format follows the output folder's extension: ``scores.parquet/`` (or no extension),
``scores.csv/``, ``scores.jsonl/``. CSV has no list type: a vector output ``y`` of 3 values is
written as columns ``y_0``, ``y_1``, ``y_2``.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import IO, Protocol

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

OUTPUT_FORMATS = {".csv": "csv", ".jsonl": "json", ".ndjson": "json", ".json": "json"}
EXTENSIONS = {"parquet": "parquet", "csv": "csv", "json": "jsonl"}
TEMPORARY_SUFFIX = ".partial"


def output_format(output: Path) -> str:
    return OUTPUT_FORMATS.get(output.suffix.lower(), "parquet")


def part_name(index: int, fmt: str) -> str:
    return f"part-{index:05d}.{EXTENSIONS[fmt]}"


class PartWriter(Protocol):
    def write(self, table: pa.Table) -> None: ...

    def close(self) -> None: ...


class PartFile:
    """Writes one output part to ``final`` + ``.partial``; ``commit`` renames it into place,
    ``abandon`` removes it."""

    def __init__(self, final: Path, fmt: str) -> None:
        self.final = final
        self.temporary = final.with_name(final.name + TEMPORARY_SUFFIX)
        self._format = fmt
        self._writer: PartWriter | None = None
        self.rows = 0

    def write(self, table: pa.Table) -> None:
        if self._writer is None:
            self._writer = _open_writer(self.temporary, self._format, table.schema)
        self._writer.write(table)
        self.rows += table.num_rows

    def commit(self, empty_schema: pa.Schema) -> None:
        """Close and rename into place (an input part without rows still gets its part)."""
        if self._writer is None:
            self._writer = _open_writer(self.temporary, self._format, empty_schema)
        self._writer.close()
        self.temporary.replace(self.final)

    def abandon(self) -> None:
        if self._writer is not None:
            with contextlib.suppress(Exception):  # a broken half-written part goes anyway
                self._writer.close()
        self.temporary.unlink(missing_ok=True)


def _open_writer(path: Path, fmt: str, schema: pa.Schema) -> PartWriter:
    if fmt == "csv":
        return _CsvWriter(path, schema)
    if fmt == "json":
        return _JsonLinesWriter(path)
    return _ParquetWriter(path, schema)


class _ParquetWriter:
    def __init__(self, path: Path, schema: pa.Schema) -> None:
        self._schema = schema
        self._writer = pq.ParquetWriter(path, schema)

    def write(self, table: pa.Table) -> None:
        self._writer.write_table(
            table.cast(self._schema) if table.schema != self._schema else table
        )

    def close(self) -> None:
        self._writer.close()


class _CsvWriter:
    def __init__(self, path: Path, schema: pa.Schema) -> None:
        self._writer = pa_csv.CSVWriter(path, flat_table(schema.empty_table()).schema)

    def write(self, table: pa.Table) -> None:
        self._writer.write_table(flat_table(table))

    def close(self) -> None:
        self._writer.close()


def flat_table(table: pa.Table) -> pa.Table:
    """``table`` with each fixed-size list column spread over columns ``name_0``, ``name_1``..."""
    columns: dict[str, pa.ChunkedArray] = {}
    for name, column in zip(table.column_names, table.columns, strict=True):
        _spread(name, column, columns)
    return pa.table(columns)


def _spread(name: str, column: pa.ChunkedArray, into: dict[str, pa.ChunkedArray]) -> None:
    if pa.types.is_fixed_size_list(column.type):
        for index in range(column.type.list_size):
            _spread(f"{name}_{index}", pc.list_element(column, index), into)
    else:
        into[name] = column


class _JsonLinesWriter:
    def __init__(self, path: Path) -> None:
        self._file: IO[bytes] = path.open("wb")

    def write(self, table: pa.Table) -> None:
        options = orjson.OPT_APPEND_NEWLINE | orjson.OPT_SERIALIZE_NUMPY
        self._file.write(b"".join(orjson.dumps(row, option=options) for row in table.to_pylist()))

    def close(self) -> None:
        self._file.close()
