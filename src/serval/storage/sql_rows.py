"""Records of ``serval.storage.evaluation`` as rows of the SQL stores' tables, and back."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from serval.storage.evaluation import Alert, Label, LoggedPrediction

PREDICTION_COLUMNS = (
    "p.id, p.model, p.version, p.request_id, p.ts, p.role, p.latency_ms, p.row_count, "
    "p.keys_json, p.inputs, p.outputs"
)
PREDICTION_INSERT = (
    "id", "model", "version", "request_id", "ts", "role", "latency_ms", "row_count",
    "keys_json", "inputs", "outputs",
)  # fmt: skip
ALERT_COLUMNS = (
    "id, model, version, kind, subject, value, threshold, raised, cleared, delivery, detail"
)


def prediction_row(r: LoggedPrediction, id_: int) -> tuple[object, ...]:
    """The values of ``PREDICTION_INSERT``."""
    keys = None if r.keys is None else orjson.dumps(list(r.keys)).decode()
    return (
        id_,
        r.model,
        r.version,
        r.request_id,
        r.timestamp,
        r.role,
        r.latency_ms,
        r.rows,
        keys,
        r.inputs,
        r.outputs,
    )


def prediction_from_row(row: Sequence[Any]) -> LoggedPrediction:
    keys = None if row[8] is None else tuple(str(k) for k in orjson.loads(row[8]))
    return LoggedPrediction(
        model=str(row[1]),
        version=int(row[2]),
        request_id=None if row[3] is None else str(row[3]),
        timestamp=float(row[4]),
        role="shadow" if row[5] == "shadow" else "primary",
        latency_ms=float(row[6]),
        rows=int(row[7]),
        keys=keys,
        inputs=bytes(row[9]),
        outputs=bytes(row[10]),
        id=int(row[0]),
    )


def label_from_row(row: Sequence[Any]) -> Label:
    return Label(bytes(row[0]), None if row[1] is None else int(row[1]), float(row[2]))


def alert_from_row(row: Sequence[Any]) -> Alert:
    return Alert(
        model=str(row[1]),
        version=int(row[2]),
        kind="drift" if row[3] == "drift" else "quality",
        subject=str(row[4]),
        value=float("nan") if row[5] is None else float(row[5]),
        threshold=float(row[6]),
        raised=float(row[7]),
        cleared=None if row[8] is None else float(row[8]),
        delivery=row[9],
        detail=str(row[10]),
        id=int(row[0]),
    )
