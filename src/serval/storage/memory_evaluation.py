"""An ``EvaluationStore`` in process memory, for the unit tests of what uses a store. It keeps
the same rules as the SQL stores (tests/storage/test_evaluation_contract.py runs against
each): one lock makes every method atomic."""

from __future__ import annotations

import dataclasses
import threading
from collections import defaultdict
from collections.abc import Iterator, Sequence

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


@dataclasses.dataclass(slots=True)
class _StoredLabel:
    id: int
    prediction_id: int
    label: Label


@dataclasses.dataclass(slots=True)
class _StoredTruth:
    item: GroundTruth
    joined: bool = False


class MemoryEvaluationStore:
    """Everything in dicts and lists behind one lock; gone with the process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._predictions: list[LoggedPrediction] = []  # index = id - 1
        self._truths: list[_StoredTruth] = []
        self._labels: list[_StoredLabel] = []
        self._labels_of: dict[int, list[Label]] = defaultdict(list)
        self._alerts: list[Alert] = []  # index = id - 1
        self._triggers: list[Trigger] = []
        self._claims: dict[str, float] = {}

    @property
    def location(self) -> str:
        return "memory"

    def write_predictions(self, records: Sequence[LoggedPrediction]) -> None:
        with self._lock:
            written = []
            for record in records:
                stored = dataclasses.replace(record, id=len(self._predictions) + 1)
                self._predictions.append(stored)
                written.append(stored)
            for truth in self._truths:
                if truth.item.request_id is not None:
                    for prediction in written:
                        if self._same_request(prediction, truth.item):
                            self._join(truth, prediction, None)
                elif not truth.joined:
                    target = _latest_keyed_row(written, truth.item)
                    if target is not None:
                        self._join(truth, *target)

    def write_ground_truth(self, items: Sequence[GroundTruth]) -> int:
        joined = 0
        with self._lock:
            for item in items:
                truth = _StoredTruth(item)
                self._truths.append(truth)
                if item.request_id is not None:
                    for prediction in self._predictions:
                        if self._same_request(prediction, item):
                            self._join(truth, prediction, None)
                else:
                    target = _latest_keyed_row(self._predictions, item)
                    if target is not None:
                        self._join(truth, *target)
                joined += truth.joined
        return joined

    @staticmethod
    def _same_request(prediction: LoggedPrediction, item: GroundTruth) -> bool:
        return prediction.model == item.model and prediction.request_id == item.request_id

    def _join(self, truth: _StoredTruth, prediction: LoggedPrediction, row: int | None) -> None:
        assert prediction.id is not None
        truth.joined = True
        label = Label(truth.item.value, row, truth.item.received)
        self._labels.append(_StoredLabel(len(self._labels) + 1, prediction.id, label))
        self._labels_of[prediction.id].append(label)

    def recent_predictions(
        self, model: str, version: int, limit: int, role: Role = "primary"
    ) -> list[LoggedPrediction]:
        with self._lock:
            chosen = [
                p
                for p in self._predictions
                if p.model == model and p.version == version and p.role == role
            ]
        chosen.sort(key=lambda p: (p.timestamp, p.id), reverse=True)
        return chosen[:limit]

    def labelled(self, model: str, version: int, limit: int) -> list[LabelledPrediction]:
        with self._lock:
            found = []
            for stored in self._labels:
                prediction = self._predictions[stored.prediction_id - 1]
                if (
                    prediction.model == model
                    and prediction.version == version
                    and prediction.role == "primary"
                ):
                    found.append((stored.label.received, stored.id, prediction, stored.label))
        found.sort(key=lambda entry: (entry[0], entry[1]), reverse=True)
        return [LabelledPrediction(p, label) for _, _, p, label in found[:limit]]

    def counts(self, model: str) -> dict[int, VersionCounts]:
        with self._lock:
            logged: dict[int, int] = defaultdict(int)
            labelled: dict[int, int] = defaultdict(int)
            for p in self._predictions:
                if p.model == model and p.role == "primary":
                    logged[p.version] += 1
                    assert p.id is not None
                    labelled[p.version] += bool(self._labels_of.get(p.id))
        return {v: VersionCounts(n, labelled[v]) for v, n in sorted(logged.items())}

    def joined(self, model: str, batch: int = 10_000) -> Iterator[list[JoinedPrediction]]:
        page: list[JoinedPrediction] = []
        with self._lock:
            everything = [
                JoinedPrediction(p, tuple(self._labels_of.get(p.id or 0, ())))
                for p in self._predictions
                if p.model == model
            ]
        for entry in everything:
            page.append(entry)
            if len(page) == batch:
                yield page
                page = []
        if page:
            yield page

    def raise_alert(self, alert: Alert) -> Alert | None:
        with self._lock:
            if self._active(alert.model, alert.version, alert.kind, alert.subject) is not None:
                return None
            stored = dataclasses.replace(alert, id=len(self._alerts) + 1, cleared=None)
            self._alerts.append(stored)
            return stored

    def _active(self, model: str, version: int, kind: AlertKind, subject: str) -> int | None:
        for index, a in enumerate(self._alerts):
            same = (a.model, a.version, a.kind, a.subject) == (model, version, kind, subject)
            if same and a.cleared is None:
                return index
        return None

    def clear_alert(
        self, model: str, version: int, kind: AlertKind, subject: str, at: float
    ) -> bool:
        with self._lock:
            index = self._active(model, version, kind, subject)
            if index is None:
                return False
            self._alerts[index] = dataclasses.replace(self._alerts[index], cleared=at)
            return True

    def set_delivery(self, alert_id: int, delivery: Delivery, detail: str = "") -> None:
        with self._lock:
            if 1 <= alert_id <= len(self._alerts):
                alert = self._alerts[alert_id - 1]
                self._alerts[alert_id - 1] = dataclasses.replace(
                    alert, delivery=delivery, detail=detail
                )

    def alerts(self, model: str, limit: int = 100) -> list[Alert]:
        with self._lock:
            found = [a for a in self._alerts if a.model == model]
        found.sort(key=lambda a: (a.raised, a.id), reverse=True)
        return found[:limit]

    def claim_trigger(self, model: str, now: float, cooldown_s: float) -> bool:
        with self._lock:
            last = self._claims.get(model)
            if last is not None and last > now - cooldown_s:
                return False
            self._claims[model] = now
            return True

    def record_trigger(self, trigger: Trigger) -> Trigger:
        with self._lock:
            stored = dataclasses.replace(trigger, id=len(self._triggers) + 1)
            self._triggers.append(stored)
            return stored

    def triggers(self, model: str, limit: int = 100) -> list[Trigger]:
        with self._lock:
            found = [t for t in self._triggers if t.model == model]
        found.sort(key=lambda t: (t.at, t.id), reverse=True)
        return found[:limit]

    def close(self) -> None:
        pass


def _latest_keyed_row(
    predictions: Sequence[LoggedPrediction], item: GroundTruth
) -> tuple[LoggedPrediction, int] | None:
    """The primary prediction row keyed ``item.key`` answered last before ``item.received``
    (ties: the later id, then the later row)."""
    best: tuple[float, int, int] | None = None
    found: tuple[LoggedPrediction, int] | None = None
    for p in predictions:
        if p.model != item.model or p.role != "primary" or p.keys is None:
            continue
        if p.timestamp > item.received:
            continue
        for row, key in enumerate(p.keys):
            rank = (p.timestamp, p.id or 0, row)
            if key == item.key and (best is None or rank > best):
                best, found = rank, (p, row)
    return found
