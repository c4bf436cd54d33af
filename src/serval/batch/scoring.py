"""Scoring one record batch: its columns to request tensors, the model's answer to result
columns, and (``--on-error skip``) the rows the model fails on isolated by halving the batch
until each failing row is alone, written with nulls and an ``error`` column."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pyarrow as pa

from serval.batch.columns import ColumnMapping, to_tensors
from serval.batch.errors import PartFailedError
from serval.batch.model import BatchModel
from serval.batch.results import (
    ROW_COLUMN,
    declared_type,
    null_results,
    result_columns,
    result_table,
)
from serval.core.errors import ServalError

OnError = Literal["stop", "skip"]


@dataclass(frozen=True, slots=True)
class Segment:
    """Consecutive rows of a batch: the model's columns for them, or the error they raised."""

    rows: int
    results: dict[str, pa.Array] | None
    error: str | None = None


class BatchScorer:
    """Scores record batches of one job with ``model``; ``on_error`` says what a failing
    batch does: ``stop`` raises ``PartFailedError``, ``skip`` writes its failing rows with
    an error."""

    def __init__(self, model: BatchModel, mapping: ColumnMapping, on_error: OnError) -> None:
        self._model = model
        self._mapping = mapping
        self._on_error = on_error
        # A keyed model answers with its keys: the job passes its --key columns already.
        self._drop = frozenset(mapping.keys)
        # Each output's column type, for the nulls of failing rows: as declared, then as seen.
        self._types: dict[str, pa.DataType] = {}
        for spec in model.metadata.outputs:
            kind = declared_type(spec)
            if kind is not None and spec.name not in self._drop:
                self._types[spec.name] = kind
        self._seen = False

    def score(self, batch: pa.RecordBatch, first_row: int, where: str) -> pa.Table:
        """The result rows of ``batch`` (rows ``first_row``.. of its part; ``where`` names
        the part in errors)."""
        passed = self._passed(batch, first_row)
        if self._on_error == "stop":
            try:
                results = self._results(batch, where)
            except ServalError as exc:
                last = first_row + batch.num_rows - 1
                raise PartFailedError(
                    f"{where}: the model failed on rows {first_row}-{last}: {exc}"
                ) from exc
            return self._table(passed, results, None)
        segments = self._isolate(batch, where)
        if len(segments) == 1 and segments[0].results is not None:
            errors = pa.nulls(batch.num_rows, pa.string())
            return self._table(passed, segments[0].results, errors)
        return self._table(passed, *self._join(segments))

    def empty_table(self, batch: pa.RecordBatch) -> pa.Table:
        """The result of a batch without rows (its columns, with the types known so far)."""
        results = null_results(self._types, 0)
        errors = pa.nulls(0, pa.string()) if self._on_error == "skip" else None
        return self._table(self._passed(batch, 0), results, errors)

    def _passed(self, batch: pa.RecordBatch, first_row: int) -> dict[str, pa.Array]:
        if self._mapping.keys:
            return {key: batch.column(key) for key in self._mapping.keys}
        rows = np.arange(first_row, first_row + batch.num_rows, dtype=np.int64)
        return {ROW_COLUMN: pa.array(rows)}

    def _results(self, batch: pa.RecordBatch, where: str) -> dict[str, pa.Array]:
        tensors = to_tensors(self._mapping, batch, where)
        response = self._model.infer(tensors)
        results = result_columns(response.outputs, tensors[0] if tensors else None, self._drop)
        if not self._seen:
            self._types = {name: array.type for name, array in results.items()}
            self._seen = True
        return results

    def _isolate(self, batch: pa.RecordBatch, where: str) -> list[Segment]:
        try:
            return [Segment(batch.num_rows, self._results(batch, where))]
        except ServalError as exc:
            if batch.num_rows == 1:
                return [Segment(1, None, str(exc))]
        half = batch.num_rows // 2
        return [
            *self._isolate(batch.slice(0, half), where),
            *self._isolate(batch.slice(half), where),
        ]

    def _join(self, segments: list[Segment]) -> tuple[dict[str, pa.Array], pa.Array]:
        names = list(self._types)
        pieces: dict[str, list[pa.Array]] = {name: [] for name in names}
        errors: list[str | None] = []
        for segment in segments:
            results = segment.results or null_results(self._types, segment.rows)
            for name in names:
                pieces[name].append(results[name])
            errors.extend([segment.error] * segment.rows)
        joined = {name: pa.concat_arrays(pieces[name]) for name in names}
        return joined, pa.array(errors, pa.string())

    def _table(
        self, passed: dict[str, pa.Array], results: dict[str, pa.Array], errors: pa.Array | None
    ) -> pa.Table:
        return result_table(passed, results, self._model.name, self._model.served_version, errors)
