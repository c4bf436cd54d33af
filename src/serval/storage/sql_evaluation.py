"""The ``EvaluationStore`` methods in SQL, shared by SQLite and PostgreSQL: a subclass says how
to open a write transaction and a read session (and turns its driver's connection failures
into ``StoreUnavailableError``); the queries are the same. The SQL is written with ``?``
parameters (the PostgreSQL session rewrites them) and the tables of ``sql_schema``.
The joins of ground truth and predictions are in ``sql_joins``, the row mapping in
``sql_rows``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter, defaultdict
from collections.abc import Collection, Iterator, Sequence
from contextlib import AbstractContextManager

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
from serval.storage.sql_joins import (
    JoinTarget,
    WrittenPrediction,
    add_counts,
    insert_labels,
    keyed_target,
    predictions_of_requests,
    waiting_by_key,
    waiting_by_request,
)
from serval.storage.sql_rows import (
    ALERT_COLUMNS,
    PREDICTION_COLUMNS,
    PREDICTION_INSERT,
    alert_from_row,
    label_from_row,
    prediction_from_row,
    prediction_row,
)
from serval.storage.sql_session import SqlSession


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
            written = [
                WrittenPrediction(record, id_) for record, id_ in zip(records, ids, strict=True)
            ]
            session.insert(
                "serval_predictions",
                PREDICTION_INSERT,
                [prediction_row(w.record, w.id) for w in written],
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
            labels: list[tuple[int, GroundTruth, JoinTarget]] = []
            by_model: dict[str, list[WrittenPrediction]] = defaultdict(list)
            for w in written:
                by_model[w.record.model].append(w)
            for model, batch in by_model.items():
                labels += waiting_by_request(session, model, batch)
                labels += waiting_by_key(session, model, batch)
            labelled = insert_labels(session, labels)
            add_counts(session, logged, labelled)

    def write_ground_truth(self, items: Sequence[GroundTruth]) -> int:
        if not items:
            return 0
        joined = 0
        with self._write({i.model for i in items}) as session:
            ids = session.new_ids("serval_ground_truth", len(items))
            labels: list[tuple[int, GroundTruth, JoinTarget]] = []
            truths = []
            by_request = predictions_of_requests(session, items)
            for truth_id, item in zip(ids, items, strict=True):
                if item.request_id is not None:
                    targets = by_request.get((item.model, item.request_id), [])
                else:
                    targets = keyed_target(session, item)
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
            add_counts(session, Counter(), insert_labels(session, labels))
        return joined

    def recent_predictions(
        self, model: str, version: int, limit: int, role: Role = "primary"
    ) -> list[LoggedPrediction]:
        with self._read() as session:
            rows = session.rows(
                f"SELECT {PREDICTION_COLUMNS} FROM serval_predictions p WHERE p.model = ? "
                "AND p.version = ? AND p.role = ? ORDER BY p.ts DESC, p.id DESC LIMIT ?",
                (model, version, role, max(limit, 0)),
            )
        return [prediction_from_row(row) for row in rows]

    def labelled(self, model: str, version: int, limit: int) -> list[LabelledPrediction]:
        with self._read() as session:
            rows = session.rows(
                f"SELECT {PREDICTION_COLUMNS}, l.value, l.row_index, l.received "
                "FROM serval_labels l JOIN serval_predictions p ON p.id = l.prediction_id "
                "WHERE l.model = ? AND l.version = ? AND l.role = 'primary' "
                "ORDER BY l.received DESC, l.id DESC LIMIT ?",
                (model, version, max(limit, 0)),
            )
        return [
            LabelledPrediction(prediction_from_row(row[:11]), label_from_row(row[11:]))
            for row in rows
        ]

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
                    f"SELECT {PREDICTION_COLUMNS} FROM serval_predictions p "
                    "WHERE p.model = ? AND p.id > ? ORDER BY p.id LIMIT ?",
                    (model, after, max(batch, 1)),
                )
                if not rows:
                    return
                first, after = int(rows[0][0]), int(rows[-1][0])
                # By the prediction id index alone; other models' labels in the range are
                # left out below.
                label_rows = session.rows(
                    "SELECT prediction_id, value, row_index, received FROM serval_labels "
                    "WHERE prediction_id BETWEEN ? AND ? ORDER BY prediction_id, id",
                    (first, after),
                )
            labels: dict[int, list[Label]] = defaultdict(list)
            for row in label_rows:
                labels[int(row[0])].append(label_from_row(row[1:]))
            yield [
                JoinedPrediction(prediction_from_row(row), tuple(labels.get(int(row[0]), ())))
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
                f"SELECT {ALERT_COLUMNS} FROM serval_alerts WHERE model = ? "
                "ORDER BY raised DESC, id DESC LIMIT ?",
                (model, max(limit, 0)),
            )
        return [alert_from_row(row) for row in rows]

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
