"""What an evaluation of a model found, per version, as ``GET /v2/models/{m}/evaluation``
returns it and the metrics and the report read it."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import UTC, datetime

from serval.storage.evaluation import Alert, Trigger


@dataclass(frozen=True, slots=True)
class QualityPoint:
    start: float  # the time bucket's start, time.time()
    value: float | None
    rows: int


@dataclass(frozen=True, slots=True)
class QualityResult:
    metric: str
    value: float | None  # None: not computable yet (no labels), ``reason`` says why
    window: int  # the window asked for (labelled predictions, the latest first)
    rows: int = 0  # labelled rows it was computed over
    threshold: float | None = None  # min, or max for an error metric
    breached: bool = False
    skipped: int = 0  # labels that did not fit their prediction
    reason: str = ""
    over_time: tuple[QualityPoint, ...] = ()


@dataclass(frozen=True, slots=True)
class FeatureDrift:
    score: float | None  # None: no value of it in the window
    drifted: bool
    rows: int = 0  # values compared
    missing: int = 0  # values left out (NaN, null)


@dataclass(frozen=True, slots=True)
class DriftResult:
    method: str
    threshold: float
    window: int  # the window asked for (logged rows, the latest first)
    rows: int = 0  # logged rows compared with the reference
    features: dict[str, FeatureDrift] = field(default_factory=dict)
    prediction: FeatureDrift | None = None
    reason: str = ""  # why drift is unavailable (no reference, nothing logged yet)


@dataclass(frozen=True, slots=True)
class VersionEvaluation:
    version: int
    logged: int
    labelled: int
    quality: QualityResult | None = None
    drift: DriftResult | None = None


@dataclass(frozen=True, slots=True)
class ModelEvaluation:
    model: str
    evaluated_at: float  # time.time()
    versions: dict[int, VersionEvaluation]
    alerts: list[Alert]
    triggers: list[Trigger]

    def to_json(self) -> dict[str, object]:
        return {
            "model": self.model,
            "evaluated_at": _iso(self.evaluated_at),
            "versions": {
                str(version): _version_json(result) for version, result in self.versions.items()
            },
            "alerts": [_alert_json(alert) for alert in self.alerts],
            "triggers": [_trigger_json(trigger) for trigger in self.triggers],
        }


def _version_json(result: VersionEvaluation) -> dict[str, object]:
    body: dict[str, object] = {"logged": result.logged, "labelled": result.labelled}
    if result.quality is not None:
        quality = dataclasses.asdict(result.quality)
        quality["over_time"] = [
            {"start": _iso(point.start), "value": point.value, "rows": point.rows}
            for point in result.quality.over_time
        ]
        body["quality"] = _without_empty(quality)
    if result.drift is not None:
        drift = result.drift
        body["drift"] = _without_empty(
            {
                "method": drift.method,
                "threshold": drift.threshold,
                "window": drift.window,
                "rows": drift.rows,
                "features": {
                    name: dataclasses.asdict(score) for name, score in drift.features.items()
                },
                "prediction": None
                if drift.prediction is None
                else dataclasses.asdict(drift.prediction),
                "reason": drift.reason,
            }
        )
    return body


def _alert_json(alert: Alert) -> dict[str, object]:
    return _without_empty(
        {
            "id": alert.id,
            "version": alert.version,
            "kind": alert.kind,
            "metric": alert.subject,
            "value": alert.value,
            "threshold": alert.threshold,
            "raised": _iso(alert.raised),
            "cleared": None if alert.cleared is None else _iso(alert.cleared),
            "delivery": alert.delivery,
            "detail": alert.detail,
        }
    )


def _trigger_json(trigger: Trigger) -> dict[str, object]:
    return _without_empty(
        {
            "id": trigger.id,
            "version": trigger.version,
            "alert": trigger.alert_id,
            "at": _iso(trigger.at),
            "action": trigger.action,
            "outcome": trigger.outcome,
        }
    )


def _without_empty(body: dict[str, object]) -> dict[str, object]:
    """Leave out the fields that say nothing (no reason, no clearing time); a ``value`` or
    ``score`` of None stays: it says the metric is not computable (and ``reason`` why)."""
    return {
        name: value
        for name, value in body.items()
        if name in ("value", "score") or (value is not None and value != "")
    }


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat().replace("+00:00", "Z")
