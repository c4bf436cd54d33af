"""The ``EvaluationStore`` methods in SQL, shared by SQLite and PostgreSQL: a subclass says how
to open a write transaction and a read session (and turns its driver's connection failures
into ``StoreUnavailableError``); the queries are the same. The SQL is written with ``?``
parameters (the PostgreSQL session rewrites them) and the tables of ``sql_schema``.

Joins: ground truth by request id labels every logged prediction with that id (the primary
answer and any shadow copies), whichever is written first. Ground truth by key labels the one
primary row with that key answered last before the item was received; an item that finds none
waits (``joined = 0``) and labels the first rows with its key written later that were answered
before it. An item that labels something never moves to another prediction.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter, defaultdict
from collections.abc import Collection, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from serval.storage.evaluation import (
    Alert,
    AlertKind,
    Delivery,
    GroundTruth,
    JoinedPrediction,
    Label,
    LabelledPrediction,
    LoggedPrediction,
    Role,
    Trigger,
    VersionCounts,
)

_CHUNK = 500  # parameters of one IN (...) list

_PREDICTION_COLUMNS = (
    "p.id, p.model, p.version, p.request_id, p.ts, p.role, p.latency_ms, p.row_count, "
    "p.keys_json, p.inputs, p.outputs"
)
_PREDICTION_INSERT = (
    "id", "model", "version", "request_id", "ts", "role", "latency_ms", "row_count",
    "keys_json", "inputs", "outputs",
)  # fmt: skip
_LABEL_INSERT = (
    "ground_truth_id", "prediction_id", "model", "version", "role", "row_index", "value",
    "received",
)  # fmt: skip
_ALERT_COLUMNS = (
    "id, model, version, kind, subject, value, threshold, raised, cleared, delivery, detail"
)


class SqlSession(Protocol):
    """One connection inside a transaction (writes) or not (reads)."""

    def rows(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]: ...

    def run(self, sql: str, params: Sequence[object] = ()) -> int:
        """Execute; the number of rows it changed."""
        ...

    def run_many(self, sql: str, params: Sequence[Sequence[object]]) -> None: ...

    def one_of(self, values: Sequence[str]) -> tuple[str, Sequence[object]]:
        """SQL that tests a column against ``values`` (``IN (?, ...)``, ``= ANY(?)``) and its
        parameters."""
        ...

    def new_ids(self, table: str, count: int) -> list[int]:
        """``count`` ids for new rows of ``table`` (ascending; inside a write transaction)."""
        ...

    def insert(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
        """Insert ``rows`` at once (PostgreSQL: COPY)."""
        ...


@dataclass(frozen=True, slots=True)
class _Target:
    """A prediction (row) an item of ground truth labels."""

    prediction_id: int
    version: int
    role: str
    row: int | None


class SqlEvaluationStore(ABC):
    @abstractmethod
    def _write(self, models: Collection[str]) -> AbstractContextManager[SqlSession]:
        """A write transaction, committed on leaving, that excludes other writers of
        ``models`` (the joins of predictions and ground truth must see each other)."""

    @abstractmethod
    def _read(self) -> AbstractContextManager[SqlSession]: ...

    # -- predictions and ground truth ---------------------------------------------------------

    def write_predictions(self, records: Sequence[LoggedPrediction]) -> None:
        if not records:
            return
        with self._write({r.model for r in records}) as session:
            ids = session.new_ids("serval_predictions", len(records))
            written = [_Written(record, id_) for record, id_ in zip(records, ids, strict=True)]
            session.insert(
                "serval_predictions", _PREDICTION_INSERT, [_prediction_row(w) for w in written]
            )
            session.insert(
                "serval_prediction_keys",
                ("model", "key_text", "ts", "prediction_id", "row_index"),
                [
                    (w.record.model, key, w.record.timestamp, w.id, row)
                    for w in written
                    if w.record.role == "primary" and w.record.keys is not None
                    for row, key in enumerate(w.record.keys)
                ],
            )
            logged = Counter((w.record.model, w.record.version) for w in written if w.primary)
            labels: list[tuple[int, GroundTruth, _Target]] = []
            by_model: dict[str, list[_Written]] = defaultdict(list)
            for w in written:
                by_model[w.record.model].append(w)
            for model, batch in by_model.items():
                labels += _waiting_by_request(session, model, batch)
                labels += _waiting_by_key(session, model, batch)
            labelled = _insert_labels(session, labels)
            _add_counts(session, logged, labelled)

    def write_ground_truth(self, items: Sequence[GroundTruth]) -> int:
        if not items:
            return 0
        joined = 0
        with self._write({i.model for i in items}) as session:
            ids = session.new_ids("serval_ground_truth", len(items))
            labels: list[tuple[int, GroundTruth, _Target]] = []
            truths = []
            for truth_id, item in zip(ids, items, strict=True):
                targets = _targets_of(session, item)
                truths.append(
                    (
                        truth_id,
                        item.model,
                        item.request_id,
                        item.key,
                        item.value,
                        item.received,
                        int(bool(targets)),
                    )
                )
                labels += [(truth_id, item, target) for target in targets]
                joined += bool(targets)
            session.insert(
                "serval_ground_truth",
                ("id", "model", "request_id", "key_text", "value", "received", "joined"),
                truths,
            )
            _add_counts(session, Counter(), _insert_labels(session, labels))
        return joined

    def recent_predictions(
        self, model: str, version: int, limit: int, role: Role = "primary"
    ) -> list[LoggedPrediction]:
        with self._read() as session:
            rows = session.rows(
                f"SELECT {_PREDICTION_COLUMNS} FROM serval_predictions p WHERE p.model = ? "
                "AND p.version = ? AND p.role = ? ORDER BY p.ts DESC, p.id DESC LIMIT ?",
                (model, version, role, max(limit, 0)),
            )
        return [_prediction(row) for row in rows]

    def labelled(self, model: str, version: int, limit: int) -> list[LabelledPrediction]:
        with self._read() as session:
            rows = session.rows(
                f"SELECT {_PREDICTION_COLUMNS}, l.value, l.row_index, l.received "
                "FROM serval_labels l JOIN serval_predictions p ON p.id = l.prediction_id "
                "WHERE l.model = ? AND l.version = ? AND l.role = 'primary' "
                "ORDER BY l.received DESC, l.id DESC LIMIT ?",
                (model, version, max(limit, 0)),
            )
        return [LabelledPrediction(_prediction(row[:11]), _label(row[11:])) for row in rows]

    def counts(self, model: str) -> dict[int, VersionCounts]:
        with self._read() as session:
            rows = session.rows(
                "SELECT version, logged, labelled FROM serval_version_counts WHERE model = ? "
                "ORDER BY version",
                (model,),
            )
        return {int(v): VersionCounts(int(logged), int(labelled)) for v, logged, labelled in rows}

    def joined(self, model: str, batch: int = 10_000) -> Iterator[list[JoinedPrediction]]:
        after = 0
        while True:
            # A session per page: a slow reader of the export holds no connection.
            with self._read() as session:
                rows = session.rows(
                    f"SELECT {_PREDICTION_COLUMNS} FROM serval_predictions p "
                    "WHERE p.model = ? AND p.id > ? ORDER BY p.id LIMIT ?",
                    (model, after, max(batch, 1)),
                )
                if not rows:
                    return
                first, after = int(rows[0][0]), int(rows[-1][0])
                label_rows = session.rows(
                    "SELECT prediction_id, value, row_index, received FROM serval_labels "
                    "WHERE prediction_id BETWEEN ? AND ? AND model = ? ORDER BY id",
                    (first, after, model),
                )
            labels: dict[int, list[Label]] = defaultdict(list)
            for row in label_rows:
                labels[int(row[0])].append(_label(row[1:]))
            yield [
                JoinedPrediction(_prediction(row), tuple(labels.get(int(row[0]), ())))
                for row in rows
            ]

    # -- alerts and triggers ------------------------------------------------------------------

    def raise_alert(self, alert: Alert) -> Alert | None:
        with self._write(()) as session:
            ids = session.rows(
                "INSERT INTO serval_alerts (model, version, kind, subject, value, threshold, "
                "raised, cleared, delivery, detail) VALUES (?, ?, ?, ?, ?, ?, ?, NULL, ?, ?) "
                "ON CONFLICT DO NOTHING RETURNING id",
                (
                    alert.model,
                    alert.version,
                    alert.kind,
                    alert.subject,
                    alert.value,
                    alert.threshold,
                    alert.raised,
                    alert.delivery,
                    alert.detail,
                ),
            )
        if not ids:
            return None
        return Alert(
            alert.model,
            alert.version,
            alert.kind,
            alert.subject,
            alert.value,
            alert.threshold,
            alert.raised,
            None,
            alert.delivery,
            alert.detail,
            int(ids[0][0]),
        )

    def clear_alert(
        self, model: str, version: int, kind: AlertKind, subject: str, at: float
    ) -> bool:
        with self._write(()) as session:
            changed = session.run(
                "UPDATE serval_alerts SET cleared = ? WHERE model = ? AND version = ? "
                "AND kind = ? AND subject = ? AND cleared IS NULL",
                (at, model, version, kind, subject),
            )
        return changed > 0

    def set_delivery(self, alert_id: int, delivery: Delivery, detail: str = "") -> None:
        with self._write(()) as session:
            session.run(
                "UPDATE serval_alerts SET delivery = ?, detail = ? WHERE id = ?",
                (delivery, detail, alert_id),
            )

    def alerts(self, model: str, limit: int = 100) -> list[Alert]:
        with self._read() as session:
            rows = session.rows(
                f"SELECT {_ALERT_COLUMNS} FROM serval_alerts WHERE model = ? "
                "ORDER BY raised DESC, id DESC LIMIT ?",
                (model, max(limit, 0)),
            )
        return [_alert(row) for row in rows]

    def claim_trigger(self, model: str, now: float, cooldown_s: float) -> bool:
        with self._write(()) as session:
            # One statement: the row's lock (PostgreSQL) or the write lock (SQLite) makes
            # of two claims at once one that inserts or updates, one that finds it recent.
            claimed = session.rows(
                "INSERT INTO serval_trigger_claims (model, last) VALUES (?, ?) "
                "ON CONFLICT (model) DO UPDATE SET last = excluded.last "
                "WHERE serval_trigger_claims.last <= excluded.last - ? RETURNING model",
                (model, now, cooldown_s),
            )
        return bool(claimed)

    def record_trigger(self, trigger: Trigger) -> Trigger:
        with self._write(()) as session:
            [trigger_id] = session.new_ids("serval_triggers", 1)
            session.insert(
                "serval_triggers",
                ("id", "model", "version", "alert_id", "at", "action", "outcome"),
                [
                    (
                        trigger_id,
                        trigger.model,
                        trigger.version,
                        trigger.alert_id,
                        trigger.at,
                        trigger.action,
                        trigger.outcome,
                    )
                ],
            )
        return Trigger(
            trigger.model,
            trigger.version,
            trigger.alert_id,
            trigger.at,
            trigger.action,
            trigger.outcome,
            trigger_id,
        )

    def triggers(self, model: str, limit: int = 100) -> list[Trigger]:
        with self._read() as session:
            rows = session.rows(
                "SELECT model, version, alert_id, at, action, outcome, id FROM serval_triggers "
                "WHERE model = ? ORDER BY at DESC, id DESC LIMIT ?",
                (model, max(limit, 0)),
            )
        return [
            Trigger(
                str(r[0]),
                int(r[1]),
                None if r[2] is None else int(r[2]),
                float(r[3]),
                str(r[4]),
                str(r[5]),
                int(r[6]),
            )
            for r in rows
        ]


@dataclass(frozen=True, slots=True)
class _Written:
    record: LoggedPrediction
    id: int

    @property
    def primary(self) -> bool:
        return self.record.role == "primary"


def _waiting_by_request(
    session: SqlSession, model: str, batch: list[_Written]
) -> list[tuple[int, GroundTruth, _Target]]:
    """Ground truth already stored for the request ids of ``batch`` (one query per chunk:
    nearly every prediction has an id, few have ground truth yet)."""
    by_request: dict[str, list[_Written]] = defaultdict(list)
    for w in batch:
        if w.record.request_id is not None:
            by_request[w.record.request_id].append(w)
    found = []
    for chunk in _chunks(list(by_request)):
        test, params = session.one_of(chunk)
        rows = session.rows(
            "SELECT id, request_id, value, received FROM serval_ground_truth WHERE model = ? "
            f"AND request_id {test}",
            (model, *params),
        )
        for truth_id, request_id, value, received in rows:
            item = GroundTruth(model, str(request_id), None, bytes(value), float(received))
            for w in by_request[str(request_id)]:
                found.append(
                    (int(truth_id), item, _Target(w.id, w.record.version, w.record.role, None))
                )
    if found:
        session.run_many(
            "UPDATE serval_ground_truth SET joined = 1 WHERE id = ? AND joined = 0",
            [(truth_id,) for truth_id in {entry[0] for entry in found}],
        )
    return found


def _waiting_by_key(
    session: SqlSession, model: str, batch: list[_Written]
) -> list[tuple[int, GroundTruth, _Target]]:
    """Keyed ground truth that found no prediction when it came, and finds one in ``batch``:
    the latest row with its key answered before it was received."""
    rows_of: dict[str, list[tuple[float, int, int, int]]] = defaultdict(list)
    for w in batch:
        if w.primary and w.record.keys is not None:
            for row, key in enumerate(w.record.keys):
                rows_of[key].append((w.record.timestamp, w.id, row, w.record.version))
    found = []
    for chunk in _chunks(list(rows_of)):
        test, params = session.one_of(chunk)
        waiting = session.rows(
            "SELECT id, key_text, value, received FROM serval_ground_truth WHERE model = ? "
            f"AND joined = 0 AND key_text {test}",
            (model, *params),
        )
        for truth_id, key, value, received in waiting:
            earlier = [entry for entry in rows_of[str(key)] if entry[0] <= float(received)]
            if not earlier:
                continue
            _, prediction_id, row, version = max(earlier)
            # Another writer may have joined it meanwhile (SQLite readers outside the lock).
            if session.run(
                "UPDATE serval_ground_truth SET joined = 1 WHERE id = ? AND joined = 0",
                (int(truth_id),),
            ):
                item = GroundTruth(model, None, str(key), bytes(value), float(received))
                found.append((int(truth_id), item, _Target(prediction_id, version, "primary", row)))
    return found


def _targets_of(session: SqlSession, item: GroundTruth) -> list[_Target]:
    if item.request_id is not None:
        rows = session.rows(
            "SELECT id, version, role FROM serval_predictions WHERE model = ? "
            "AND request_id = ? ORDER BY id",
            (item.model, item.request_id),
        )
        return [_Target(int(r[0]), int(r[1]), str(r[2]), None) for r in rows]
    rows = session.rows(
        "SELECT k.prediction_id, p.version, k.row_index FROM serval_prediction_keys k "
        "JOIN serval_predictions p ON p.id = k.prediction_id WHERE k.model = ? "
        "AND k.key_text = ? AND k.ts <= ? "
        "ORDER BY k.ts DESC, k.prediction_id DESC, k.row_index DESC LIMIT 1",
        (item.model, item.key, item.received),
    )
    return [_Target(int(r[0]), int(r[1]), "primary", int(r[2])) for r in rows]


def _insert_labels(
    session: SqlSession, labels: list[tuple[int, GroundTruth, _Target]]
) -> Counter[tuple[str, int]]:
    """Insert ``labels``; how many primary predictions per (model, version) they labelled for
    the first time."""
    session.insert(
        "serval_labels",
        _LABEL_INSERT,
        [
            (
                truth_id,
                t.prediction_id,
                item.model,
                t.version,
                t.role,
                t.row,
                item.value,
                item.received,
            )
            for truth_id, item, t in labels
        ],
    )
    newly: Counter[tuple[str, int]] = Counter()
    seen: set[int] = set()
    for _, item, target in labels:
        if target.role != "primary" or target.prediction_id in seen:
            continue
        seen.add(target.prediction_id)
        if session.run(
            "UPDATE serval_predictions SET labelled = 1 WHERE id = ? AND labelled = 0",
            (target.prediction_id,),
        ):
            newly[(item.model, target.version)] += 1
    return newly


def _add_counts(
    session: SqlSession, logged: Counter[tuple[str, int]], labelled: Counter[tuple[str, int]]
) -> None:
    """Add to the per-version counters, in one order (model, version) so that two
    transactions never wait on each other's rows in opposite orders."""
    session.run_many(
        "INSERT INTO serval_version_counts (model, version, logged, labelled) "
        "VALUES (?, ?, ?, ?) ON CONFLICT (model, version) DO UPDATE SET "
        "logged = serval_version_counts.logged + excluded.logged, "
        "labelled = serval_version_counts.labelled + excluded.labelled",
        [
            (m, v, logged[(m, v)], labelled[(m, v)])
            for m, v in sorted(logged.keys() | labelled.keys())
        ],
    )


def _prediction_row(w: _Written) -> tuple[object, ...]:
    r = w.record
    keys = None if r.keys is None else orjson.dumps(list(r.keys)).decode()
    return (
        w.id,
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


def _prediction(row: Sequence[Any]) -> LoggedPrediction:
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


def _label(row: Sequence[Any]) -> Label:
    return Label(bytes(row[0]), None if row[1] is None else int(row[1]), float(row[2]))


def _alert(row: Sequence[Any]) -> Alert:
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


def _chunks(values: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(values), _CHUNK):
        yield values[start : start + _CHUNK]
