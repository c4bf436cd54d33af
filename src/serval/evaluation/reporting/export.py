"""``serval monitor export``: a model's logged predictions joined with their ground truth, one
row per predicted row, streamed into a Parquet file (docs/evaluation.md#export-and-report).

The log is read twice, a page (``store.joined``) at a time, never whole: a first pass learns
the columns (which tensors, their datatypes and row widths, the ground truth's type), the
second writes each page as one row group. The file is written beside ``out`` and renamed
into place when complete: an export that fails leaves no half-written file.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from serval.evaluation.recording.tensor_log import LoggedTensor, decode_tensors
from serval.evaluation.reporting.export_columns import (
    GroundTruthSeen,
    Side,
    TensorColumn,
    TensorSeen,
    ground_truth_cell,
    row_labels,
)
from serval.storage.evaluation import EvaluationStore, JoinedPrediction

# The columns every export has, before the tensors' (which take another name if they clash).
FIXED_COLUMNS: tuple[tuple[str, pa.DataType], ...] = (
    ("model", pa.string()),
    ("version", pa.int64()),
    ("timestamp", pa.timestamp("us", tz="UTC")),
    ("role", pa.string()),
    ("request_id", pa.string()),
    ("key", pa.string()),
)
BATCH = 10_000  # logged requests per page read, and per row group written


class NothingLoggedError(LookupError):
    """The store holds no logged prediction of the model."""


@dataclass(frozen=True, slots=True)
class ExportSummary:
    requests: int  # logged requests exported
    rows: int  # predicted rows: the file's rows
    labelled: int  # rows with ground truth
    row_groups: int
    columns: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ExportPlan:
    """The export's columns, learnt by ``plan_export``."""

    tensors: tuple[TensorColumn, ...]
    ground_truth: GroundTruthSeen

    @property
    def schema(self) -> pa.Schema:
        fields = [pa.field(name, datatype) for name, datatype in FIXED_COLUMNS]
        fields += [pa.field(column.column, column.arrow_type) for column in self.tensors]
        fields.append(pa.field("ground_truth", self.ground_truth.arrow_type))
        fields.append(pa.field("labelled_at", pa.timestamp("us", tz="UTC")))
        return pa.schema(fields)


Pages = Callable[[], Iterator[list[JoinedPrediction]]]


def export_predictions(
    store: EvaluationStore,
    model: str,
    out: Path,
    *,
    batch: int = BATCH,
    feature_names: Mapping[str, Sequence[str]] | None = None,
) -> ExportSummary:
    """Write every logged prediction of ``model`` with its ground truth to the Parquet file
    ``out``. ``feature_names``: per input of n values a row, the names of its n columns (the
    reference's), to write one column per feature instead of one list column.

    Raises ``NothingLoggedError`` when none is logged (no file is written), and
    ``StoreUnavailableError`` when the store cannot be read."""

    def pages() -> Iterator[list[JoinedPrediction]]:
        return store.joined(model, batch)

    plan = plan_export(pages, feature_names or {})
    if plan is None:
        raise NothingLoggedError(f"model {model!r}: nothing logged in {store.location}")
    return write_export(pages, plan, out)


def plan_export(
    pages: Pages, feature_names: Mapping[str, Sequence[str]] | None = None
) -> ExportPlan | None:
    """The first pass: the columns of every tensor logged and the ground truth's type; None
    when nothing is logged."""
    seen: dict[tuple[Side, str], TensorSeen] = {}
    ground_truth = GroundTruthSeen()
    logged = False
    for page in pages():
        for joined in page:
            logged = True
            record = joined.prediction
            sides: tuple[tuple[Side, bytes], ...] = (
                ("input", record.inputs),
                ("output", record.outputs),
            )
            for side, blob in sides:
                for name, tensor in decode_tensors(blob).items():
                    seen.setdefault((side, name), TensorSeen()).add(tensor)
            values, _ = row_labels(joined.labels, record.rows)
            ground_truth.add(value for value in values if value is not None)
    if not logged:
        return None
    wanted: list[TensorColumn] = []
    for (side, name), shapes in seen.items():
        column = TensorColumn.of(name, name, side, shapes)
        names = (feature_names or {}).get(name) if side == "input" else None
        wanted += column.split(names) if names else [column]
    return ExportPlan(_unique(wanted), ground_truth)


def _unique(columns: list[TensorColumn]) -> tuple[TensorColumn, ...]:
    """``columns`` with names that clash (an output named as an input, a tensor named as a
    fixed column) prefixed with ``input_`` / ``output_``."""
    taken = {name for name, _ in FIXED_COLUMNS} | {"ground_truth", "labelled_at"}
    names = [column.column for column in columns]
    unique = []
    for column in columns:
        name = column.column
        if name in taken or names.count(name) > 1:
            name = f"{column.side}_{name}"
        taken.add(name)
        unique.append(replace(column, column=name))
    return tuple(unique)


def write_export(pages: Pages, plan: ExportPlan, out: Path) -> ExportSummary:
    """The second pass: a row group per page, into ``out`` (replaced once complete)."""
    schema = plan.schema
    partial = out.with_name(f".{out.name}.partial")
    requests = rows = labelled = groups = 0
    try:
        with pq.ParquetWriter(partial, schema) as writer:
            for page in pages():
                table = _page_table(page, plan, schema)
                writer.write_table(table)
                requests += len(page)
                rows += table.num_rows
                labelled += table.num_rows - table.column("labelled_at").null_count
                groups += 1
        partial.replace(out)
    finally:
        partial.unlink(missing_ok=True)
    return ExportSummary(requests, rows, labelled, groups, tuple(schema.names))


def _page_table(page: list[JoinedPrediction], plan: ExportPlan, schema: pa.Schema) -> pa.Table:
    cells: dict[str, list[Any]] = {name: [] for name in schema.names}
    for joined in page:
        record = joined.prediction
        rows = record.rows
        cells["model"] += [record.model] * rows
        cells["version"] += [record.version] * rows
        cells["timestamp"] += [_micros(record.timestamp)] * rows
        cells["role"] += [record.role] * rows
        cells["request_id"] += [record.request_id] * rows
        keys = record.keys if record.keys is not None and len(record.keys) == rows else None
        cells["key"] += list(keys) if keys is not None else [None] * rows
        tensors: dict[Side, dict[str, LoggedTensor]] = {
            "input": decode_tensors(record.inputs),
            "output": decode_tensors(record.outputs),
        }
        for column in plan.tensors:
            cells[column.column] += column.cells(tensors[column.side].get(column.tensor), rows)
        values, received = row_labels(joined.labels, rows)
        cells["ground_truth"] += [ground_truth_cell(v, plan.ground_truth) for v in values]
        cells["labelled_at"] += [None if at is None else _micros(at) for at in received]
    arrays = [pa.array(cells[f.name], type=f.type) for f in schema]
    return pa.Table.from_arrays(arrays, schema=schema)


def _micros(at: float) -> int:
    return round(at * 1_000_000)
