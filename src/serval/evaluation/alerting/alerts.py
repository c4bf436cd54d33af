"""Alerts: a quality or drift value of a version crossing its threshold raises one alert, not
one per evaluation while it lasts; back within the threshold clears it, so a later crossing
raises a new one (docs/alerts.md).

``AlertBook.evaluate`` is called after each evaluation of a version with its ``Reading``\\ s.
The store decides "once" (``raise_alert`` returns the alert only to the one process that
raised it), so replicas sharing a store raise each alert once between them. For each alert
raised: a WARNING log line, ``on_alert`` (metrics), the webhook POST, the retraining trigger,
then ``on_rollback`` when the plan asks for it; the POST and the trigger run in the
background worker, never in the caller.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from serval.core.specs.monitoring import DriftSpec, MonitoringSpec, QualitySpec, RetrainSpec
from serval.evaluation.alerting.delivery import DeliveryWorker
from serval.evaluation.alerting.triggers import RetrainRun
from serval.evaluation.alerting.webhooks import AlertDelivery, RetryPolicy, WebhookPoster
from serval.storage.evaluation import Alert, AlertKind, EvaluationStore

logger = logging.getLogger("serval.evaluation")
AlertCallback = Callable[[Alert], None]
Bound = Literal["min", "max", "threshold"]


@dataclass(frozen=True, slots=True)
class Reading:
    """One value of a version's evaluation and the threshold it is held to: ``bound`` "min"
    alerts below it, "max" above it, "threshold" (drift) when the value reaches it."""

    kind: AlertKind
    subject: str  # the quality metric, or the feature (or "prediction") that drifted
    value: float
    threshold: float
    bound: Bound

    @property
    def breached(self) -> bool:
        if self.bound == "min":
            return self.value < self.threshold
        if self.bound == "max":
            return self.value > self.threshold
        return self.value >= self.threshold

    def describe(self) -> str:
        """``accuracy 0.71 (min 0.8)``, ``x 0.31 (threshold 0.2)``."""
        return f"{self.subject} {self.value:.4g} ({self.bound} {self.threshold:.4g})"


def quality_reading(spec: QualitySpec, value: float) -> Reading | None:
    """The reading of a quality value, None without a threshold or without a value (NaN:
    e.g. auc over labels of one class): an alert then stays as it is."""
    if math.isnan(value):
        return None
    if spec.min is not None:
        return Reading("quality", spec.metric, value, spec.min, "min")
    if spec.max is not None:
        return Reading("quality", spec.metric, value, spec.max, "max")
    return None


def drift_readings(spec: DriftSpec, scores: Mapping[str, float]) -> list[Reading]:
    """The readings of drift scores by feature (or "prediction"): a score that reaches the
    threshold has drifted. NaN scores (not computable) are left out."""
    limit = spec.limit
    return [
        Reading("drift", subject, score, limit, "threshold")
        for subject, score in scores.items()
        if not math.isnan(score)
    ]


@dataclass(frozen=True, slots=True)
class AlertPlan:
    """What a model's alerts set off besides the log line and metrics."""

    folder: Path  # the model's folder: where the retraining command runs
    webhook: str | None = None  # monitoring.alerts.webhook
    retrain: RetrainSpec | None = None
    # The version is a canary whose guardrails roll back on alert
    # (traffic.canary.guardrails.rollback_on_alert): the caller knows, the book calls back.
    roll_back: bool = False

    @classmethod
    def of(cls, spec: MonitoringSpec, folder: Path, roll_back: bool = False) -> AlertPlan:
        return cls(folder, spec.alerts.webhook, spec.retrain, roll_back)


class AlertBook:
    """Raises and clears alerts in the store from evaluations, and sets off what a raised
    alert does. One per process, shared by every model; ``close()`` at shutdown."""

    def __init__(
        self,
        store: EvaluationStore,
        *,
        on_alert: AlertCallback | None = None,
        on_rollback: AlertCallback | None = None,
        retry: RetryPolicy | None = None,
        command_timeout_s: float = 600.0,
        threads: int = 2,
    ) -> None:
        self._store = store
        self._on_alert = on_alert
        self._on_rollback = on_rollback
        self._command_timeout_s = command_timeout_s
        self._poster = WebhookPoster(retry or RetryPolicy())
        self._worker = DeliveryWorker(threads)

    def evaluate(
        self,
        model: str,
        version: int,
        readings: Iterable[Reading],
        plan: AlertPlan,
        now: float | None = None,
    ) -> list[Alert]:
        """Raise the alerts of ``readings`` past their threshold that are not active yet,
        clear the active ones back within; returns the alerts this call raised. Blocking
        (store calls): run it off the event loop. A value not read leaves its alert as it
        is. ``StoreUnavailableError`` passes through; the alerts raised before it have set
        off their actions."""
        at = time.time() if now is None else now
        raised: list[Alert] = []
        for reading in readings:
            if not reading.breached:
                self._clear(model, version, reading, at)
                continue
            alert = self._store.raise_alert(
                Alert(
                    model=model,
                    version=version,
                    kind=reading.kind,
                    subject=reading.subject,
                    # Plain floats: scores computed with numpy are numpy scalars, which
                    # JSON (orjson) and the stores' drivers may refuse.
                    value=float(reading.value),
                    threshold=float(reading.threshold),
                    raised=at,
                    delivery="pending" if plan.webhook else "none",
                )
            )
            if alert is not None:
                # One evaluation's alerts share a cause: the first one retrains, rolls back.
                self._announce(alert, reading, plan, first=not raised)
                raised.append(alert)
        return raised

    def active(self, model: str, limit: int = 100) -> list[Alert]:
        """The model's alerts not cleared, newest first (of its latest ``limit``)."""
        return [alert for alert in self._store.alerts(model, limit) if alert.cleared is None]

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait for the background deliveries and triggers to finish (tests, tools)."""
        return self._worker.wait_idle(timeout_s)

    def close(self, grace_s: float = 5.0) -> None:
        """Finish or give up the pending deliveries and triggers within about ``grace_s``,
        recording what happened to each."""
        self._worker.close(grace_s)
        self._poster.close()

    def _clear(self, model: str, version: int, reading: Reading, at: float) -> None:
        if self._store.clear_alert(model, version, reading.kind, reading.subject, at):
            logger.info(
                "model %s version %d: %s alert cleared: %s",
                model,
                version,
                reading.kind,
                reading.describe(),
                extra={"model": model, "version": version},
            )

    def _announce(self, alert: Alert, reading: Reading, plan: AlertPlan, first: bool) -> None:
        assert alert.id is not None, "the store gives raised alerts their id"
        logger.warning(
            "model %s version %d: %s alert %d: %s",
            alert.model,
            alert.version,
            alert.kind,
            alert.id,
            reading.describe(),
            extra={"model": alert.model, "version": alert.version, "alert_id": alert.id},
        )
        _call(self._on_alert, alert, "on_alert")
        if plan.webhook is not None:
            self._worker.submit(AlertDelivery(alert, plan.webhook, self._poster, self._store))
        if first and plan.retrain is not None:
            self._trigger(alert, plan.retrain, plan.folder)
        if first and plan.roll_back:
            _call(self._on_rollback, alert, "on_rollback")

    def _trigger(self, alert: Alert, retrain: RetrainSpec, folder: Path) -> None:
        at = alert.raised
        if not self._store.claim_trigger(alert.model, at, retrain.cooldown_s):
            logger.info(
                "model %s: alert %d triggers no retraining: one ran within the cooldown (%g s)",
                alert.model,
                alert.id,
                retrain.cooldown_s,
            )
            return
        self._worker.submit(
            RetrainRun(
                alert=alert,
                at=at,
                webhook=retrain.webhook,
                command=retrain.command,
                folder=folder,
                command_timeout_s=self._command_timeout_s,
                poster=self._poster,
                store=self._store,
            )
        )


def _call(callback: AlertCallback | None, alert: Alert, name: str) -> None:
    if callback is None:
        return
    try:
        callback(alert)
    except Exception:
        # The alert is recorded and its other actions must still run.
        logger.exception("model %s: %s failed for alert %s", alert.model, name, alert.id)
