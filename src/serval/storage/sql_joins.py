"""Ground truth joined to logged predictions in SQL, for ``SqlEvaluationStore``.

Ground truth by request id labels every logged prediction with that id (the primary answer and
any shadow copies), whichever is written first. Ground truth by key labels the one primary row
with that key answered last before the item was received; an item that finds none waits
(``joined = 0``) and labels the first rows with its key written later that were answered
before it. An item that labels something never moves to another prediction.

Each function runs inside the caller's write transaction, which keeps other writers of the
model out (so a prediction and its ground truth written at once always meet).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from serval.storage.evaluation import GroundTruth, LoggedPrediction
from serval.storage.sql_session import SqlSession, chunks

LABEL_INSERT = (
    "ground_truth_id", "prediction_id", "model", "version", "role", "row_index", "value",
    "received",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class JoinTarget:
    """A prediction (row) an item of ground truth labels."""

    prediction_id: int
    version: int
    role: str
    row: int | None


@dataclass(frozen=True, slots=True)
class WrittenPrediction:
    record: LoggedPrediction
    id: int

    @property
    def primary(self) -> bool:
        return self.record.role == "primary"


def waiting_by_request(
    session: SqlSession, model: str, batch: list[WrittenPrediction]
) -> list[tuple[int, GroundTruth, JoinTarget]]:
    """Ground truth already stored for the request ids of ``batch`` (one query per chunk:
    nearly every prediction has an id, few have ground truth yet)."""
    by_request: dict[str, list[WrittenPrediction]] = defaultdict(list)
    for w in batch:
        if w.record.request_id is not None:
            by_request[w.record.request_id].append(w)
    found = []
    for chunk in chunks(list(by_request)):
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
                    (int(truth_id), item, JoinTarget(w.id, w.record.version, w.record.role, None))
                )
    if found:
        session.run_many(
            "UPDATE serval_ground_truth SET joined = 1 WHERE id = ? AND joined = 0",
            [(truth_id,) for truth_id in {entry[0] for entry in found}],
        )
    return found


def waiting_by_key(
    session: SqlSession, model: str, batch: list[WrittenPrediction]
) -> list[tuple[int, GroundTruth, JoinTarget]]:
    """Keyed ground truth that found no prediction when it came, and finds one in ``batch``:
    the latest row with its key answered before it was received."""
    rows_of: dict[str, list[tuple[float, int, int, int]]] = defaultdict(list)
    for w in batch:
        if w.primary and w.record.keys is not None:
            for row, key in enumerate(w.record.keys):
                rows_of[key].append((w.record.timestamp, w.id, row, w.record.version))
    found = []
    for chunk in chunks(list(rows_of)):
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
            # The transaction's lock keeps other writers of the model out; checked anyway.
            if session.run(
                "UPDATE serval_ground_truth SET joined = 1 WHERE id = ? AND joined = 0",
                (int(truth_id),),
            ):
                item = GroundTruth(model, None, str(key), bytes(value), float(received))
                found.append(
                    (int(truth_id), item, JoinTarget(prediction_id, version, "primary", row))
                )
    return found


def predictions_of_requests(
    session: SqlSession, items: Sequence[GroundTruth]
) -> dict[tuple[str, str], list[JoinTarget]]:
    """The predictions logged for the request ids of ``items``, one query per model and chunk."""
    wanted: dict[str, set[str]] = defaultdict(set)
    for item in items:
        if item.request_id is not None:
            wanted[item.model].add(item.request_id)
    found: dict[tuple[str, str], list[JoinTarget]] = defaultdict(list)
    for model, request_ids in wanted.items():
        for chunk in chunks(sorted(request_ids)):
            test, params = session.one_of(chunk)
            for prediction_id, request_id, version, role in session.rows(
                "SELECT id, request_id, version, role FROM serval_predictions WHERE model = ? "
                f"AND request_id {test}",
                (model, *params),
            ):
                target = JoinTarget(int(prediction_id), int(version), str(role), None)
                found[(model, str(request_id))].append(target)
    for targets in found.values():
        targets.sort(
            key=lambda target: target.prediction_id
        )  # here: ORDER BY id makes SQLite scan (model, id)
    return found


def keyed_target(session: SqlSession, item: GroundTruth) -> list[JoinTarget]:
    """The primary row with ``item.key`` answered last before ``item.received`` (or none)."""
    rows = session.rows(
        "SELECT k.prediction_id, p.version, k.row_index FROM serval_prediction_keys k "
        "JOIN serval_predictions p ON p.id = k.prediction_id WHERE k.model = ? "
        "AND k.key_text = ? AND k.ts <= ? "
        "ORDER BY k.ts DESC, k.prediction_id DESC, k.row_index DESC LIMIT 1",
        (item.model, item.key, item.received),
    )
    return [JoinTarget(int(r[0]), int(r[1]), "primary", int(r[2])) for r in rows]


def insert_labels(
    session: SqlSession, labels: list[tuple[int, GroundTruth, JoinTarget]]
) -> Counter[tuple[str, int]]:
    """Insert ``labels``; how many primary predictions per (model, version) they labelled for
    the first time."""
    session.insert(
        "serval_labels",
        LABEL_INSERT,
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
    primary = {
        t.prediction_id: (item.model, t.version) for _, item, t in labels if t.role == "primary"
    }
    for chunk in chunks(sorted(primary)):
        test, params = session.one_of(chunk)
        # One statement per chunk; RETURNING gives the predictions labelled for the first time.
        for (prediction_id,) in session.rows(
            f"UPDATE serval_predictions SET labelled = 1 WHERE id {test} AND labelled = 0 "
            "RETURNING id",
            params,
        ):
            newly[primary[int(prediction_id)]] += 1
    return newly


def add_counts(
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
