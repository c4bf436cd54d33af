"""Input files: which parts a job reads, their schemas, and each part as a stream of record
batches (never a whole file in memory). A part is one file: Parquet, CSV or JSON lines."""

from __future__ import annotations

import glob
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from serval.batch.errors import BatchInputError

FORMATS = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
    ".jsonl": "json",
    ".ndjson": "json",
    ".json": "json",
}
# CSV and JSON are read in blocks of this many bytes (each a record batch, then cut to the
# rows per model call); Parquet in batches of the rows per call.
TEXT_BLOCK_BYTES = 4 << 20
READ_BUFFER_BYTES = 1 << 20


@dataclass(frozen=True, slots=True)
class InputPart:
    """One input file and how to read it."""

    path: Path
    format: str  # parquet | csv | json

    def schema(self) -> pa.Schema:
        """The part's columns and types, read from its footer (Parquet) or first block."""
        try:
            if self.format == "parquet":
                return pq.ParquetFile(self.path).schema_arrow
            with self._open_text() as reader:
                return reader.schema
        except (pa.ArrowException, OSError) as exc:
            raise BatchInputError(f"cannot read {self.path}: {exc}") from exc

    def rows(self) -> int | None:
        """The part's rows when the file says so cheaply (Parquet), else None."""
        if self.format != "parquet":
            return None
        try:
            return int(pq.ParquetFile(self.path).metadata.num_rows)
        except (pa.ArrowException, OSError):
            return None

    def batches(self, columns: list[str], batch_rows: int) -> Iterator[pa.RecordBatch]:
        """The part's rows as record batches of at most ``batch_rows`` rows, only ``columns``;
        a corrupt file or a value of the wrong type is a ``BatchInputError`` naming the file
        and the row reached."""
        seen = 0
        try:
            if self.format == "parquet":
                # pre_buffer (pyarrow's default) keeps each column chunk it read for the
                # reader's lifetime: a whole file in memory by its end. Buffered reads stream.
                parquet = pq.ParquetFile(self.path, pre_buffer=False, buffer_size=READ_BUFFER_BYTES)
                stream = parquet.iter_batches(batch_size=batch_rows, columns=columns)
                for batch in stream:
                    seen += batch.num_rows
                    yield batch
                return
            with self._open_text() as reader:
                for whole in reader:
                    block = whole.select(columns)
                    for start in range(0, block.num_rows, batch_rows):
                        piece = block.slice(start, batch_rows)
                        seen += piece.num_rows
                        yield piece
        except (pa.ArrowException, OSError) as exc:
            raise BatchInputError(f"cannot read {self.path} after row {seen}: {exc}") from exc

    def _open_text(self) -> pa.RecordBatchReader:
        if self.format == "csv":
            return pa_csv.open_csv(
                self.path, read_options=pa_csv.ReadOptions(block_size=TEXT_BLOCK_BYTES)
            )
        return pa_json.open_json(
            self.path, read_options=pa_json.ReadOptions(block_size=TEXT_BLOCK_BYTES)
        )


def find_parts(spec: str | Path) -> list[InputPart]:
    """The parts of ``--input``: a file, a folder (its data files, sorted) or a glob."""
    text = str(spec)
    path = Path(text)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in FORMATS)
        if not files:
            raise BatchInputError(
                f"--input {text}: the folder holds no {', '.join(sorted(FORMATS))} file"
            )
    elif path.is_file():
        files = [path]
    else:
        matches = glob.glob(text)  # noqa: PTH207 - a user's pattern, absolute or relative
        files = sorted(Path(p) for p in matches if Path(p).is_file())
        if not files:
            raise BatchInputError(f"--input {text}: no such file, folder or matching files")
    parts = []
    for file in files:
        kind = FORMATS.get(file.suffix.lower())
        if kind is None:
            raise BatchInputError(
                f"--input: {file} is not a Parquet, CSV or JSON lines file (by its extension: "
                f"{', '.join(sorted(FORMATS))})"
            )
        parts.append(InputPart(file, kind))
    return parts
