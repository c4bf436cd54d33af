"""Evaluates a monitored model: per version that has logged predictions, quality over its
latest labelled rows and drift of its latest logged rows against the reference; then raises
or clears alerts (``alerts.AlertBook``) and keeps the result for the metrics.

``evaluate`` blocks (store reads, numpy, scipy): callers run it in a thread. What only the
event loop may read (the model's metadata, its traffic policy) comes in a ``ModelContext``
prepared there. The reference is read once per file change, with its baselines; a missing or
unreadable reference leaves drift unavailable with the reason, logged once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from serval.core.specs.monitoring import DriftSpec, MonitoringSpec, QualitySpec
from serval.core.types import TensorSpec
from serval.evaluation.alerting.alerts import (
    AlertBook,
    AlertPlan,
    Reading,
    drift_readings,
    quality_reading,
)
from serval.evaluation.analysis.outputs import PredictionOutputs, prediction_outputs
from serval.evaluation.recording.monitored import MonitoredModel, MonitoredModels
from serval.evaluation.results import (
    DriftResult,
    FeatureDrift,
    ModelEvaluation,
    QualityPoint,
    QualityResult,
    VersionEvaluation,
)
from serval.storage.evaluation import EvaluationStore

if TYPE_CHECKING:  # the monitoring extra's modules are imported when first needed
    from serval.evaluation.analysis.drift import Baseline
    from serval.evaluation.analysis.reference import FeatureMap

logger = logging.getLogger("serval.evaluation")


@dataclass(frozen=True, slots=True)
class ModelContext:
    """What the event loop knows of a model at evaluation time: its inputs and outputs (None
    when no version is loaded) and the versions an alert rolls back (a canary)."""

    inputs: tuple[TensorSpec, ...] | None = None
    outputs: tuple[TensorSpec, ...] | None = None
    rollback_versions: frozenset[int] = frozenset()


@dataclass(slots=True)
class _CachedReference:
    """A model's reference as last read: the file's identity, and its baselines or why not."""

    identity: tuple[object, ...]
    baselines: dict[str, Baseline] = field(default_factory=dict)
    feature_map: FeatureMap | None = None
    reason: str = ""


class Evaluator:
    def __init__(
        self,
        store: EvaluationStore,
        monitored: MonitoredModels,
        alerts: AlertBook,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._monitored = monitored
        self._alerts = alerts
        self._clock = clock
        self._references: dict[str, _CachedReference] = {}
        # The latest evaluation of each model: what the Prometheus gauges report.
        self.latest: dict[str, ModelEvaluation] = {}

    def evaluate(self, name: str, context: ModelContext) -> ModelEvaluation:
        """Evaluate ``name`` now; ``LookupError`` when it is not monitored, and
        ``StoreUnavailableError`` when the store cannot be reached."""
        model = self._monitored.get(name)
        if model is None:
            raise LookupError(f"model {name!r} is not monitored")
        spec = model.monitoring
        outputs, outputs_reason = _outputs(model, context)
        versions: dict[int, VersionEvaluation] = {}
        for version, counts in sorted(self._store.counts(name).items()):
            quality = drift = None
            if spec.quality is not None:
                quality = self._quality(name, version, spec.quality, outputs, outputs_reason)
            if spec.drift is not None:
                drift = self._drift(model, version, spec.drift, context, outputs)
            versions[version] = VersionEvaluation(
                version, counts.logged, counts.labelled, quality, drift
            )
            plan = AlertPlan.of(spec, model.folder, roll_back=version in context.rollback_versions)
            self._alerts.evaluate(name, version, _readings(spec, quality, drift), plan)
        evaluation = ModelEvaluation(
            name,
            self._clock(),
            versions,
            self._store.alerts(name),
            self._store.triggers(name),
        )
        self.latest[name] = evaluation
        return evaluation

    def forget(self, name: str) -> None:
        """``name`` is not monitored any more: drop what is kept of it."""
        self.latest.pop(name, None)
        self._references.pop(name, None)

    def _quality(
        self,
        name: str,
        version: int,
        spec: QualitySpec,
        outputs: PredictionOutputs | None,
        outputs_reason: str,
    ) -> QualityResult:
        threshold = spec.min if spec.min is not None else spec.max
        if outputs is None:
            return QualityResult(
                spec.metric, None, spec.window, threshold=threshold, reason=outputs_reason
            )
        from serval.evaluation.analysis.quality import quality, quality_over_time  # noqa: PLC0415

        labelled = self._store.labelled(name, version, spec.window)
        value = quality(spec.metric, labelled, outputs, rows=spec.window)
        points = quality_over_time(spec.metric, labelled, spec.bucket_s, outputs)
        reading = quality_reading(spec, value.value) if value.value is not None else None
        return QualityResult(
            spec.metric,
            value.value,
            spec.window,
            rows=value.count,
            threshold=threshold,
            breached=reading is not None and reading.breached,
            skipped=value.skipped,
            reason=value.reason,
            over_time=tuple(QualityPoint(p.start, p.value, p.rows) for p in points),
        )

    def _drift(
        self,
        model: MonitoredModel,
        version: int,
        spec: DriftSpec,
        context: ModelContext,
        outputs: PredictionOutputs | None,
    ) -> DriftResult:
        reference = self._reference(model, context, outputs)
        if reference.reason:
            return DriftResult(spec.method, spec.limit, spec.window, reason=reference.reason)
        from serval.evaluation.analysis.drift import drift  # noqa: PLC0415 - the monitoring extra
        from serval.evaluation.analysis.reference import PREDICTION  # noqa: PLC0415

        feature_map = reference.feature_map
        assert feature_map is not None  # set whenever there is no reason
        records = self._store.recent_predictions(model.name, version, spec.window)
        # Records are requests of one or more rows, newest first: the window is in rows.
        columns = {
            subject: values[: spec.window]
            for subject, values in feature_map.columns(records).items()
        }
        rows = max((len(values) for values in columns.values()), default=0)
        if not rows:
            return DriftResult(
                spec.method, spec.limit, spec.window, reason="no logged rows to compare yet"
            )
        scores = drift(reference.baselines, columns, spec.method, spec.limit)
        features = {
            subject: FeatureDrift(score.score, score.drifted, score.rows, score.missing)
            for subject, score in scores.items()
        }
        prediction = features.pop(PREDICTION, None)
        return DriftResult(spec.method, spec.limit, spec.window, rows, features, prediction)

    def _reference(
        self, model: MonitoredModel, context: ModelContext, outputs: PredictionOutputs | None
    ) -> _CachedReference:
        """The model's reference and baselines, read again when the file or the model's
        inputs change; a reason instead when it cannot be used (logged once per reason)."""
        spec = model.monitoring
        assert spec.reference is not None  # drift needs one (MonitoringSpec)
        path = model.folder / spec.reference
        identity = (path, _stamp(path), context.inputs, outputs)
        cached = self._references.get(model.name)
        if cached is not None and cached.identity == identity:
            return cached
        cached = _CachedReference(identity)
        if context.inputs is None:
            cached.reason = "the model has no version loaded: its inputs are unknown"
        else:
            cached = self._read_reference(model, path, identity, context.inputs, outputs)
        if cached.reason:
            logger.warning(
                "model %s: drift is unavailable: %s",
                model.name,
                cached.reason,
                extra={"model": model.name},
            )
        self._references[model.name] = cached
        return cached

    @staticmethod
    def _read_reference(
        model: MonitoredModel,
        path: Path,
        identity: tuple[object, ...],
        inputs: tuple[TensorSpec, ...],
        outputs: PredictionOutputs | None,
    ) -> _CachedReference:
        cached = _CachedReference(identity)
        try:
            from serval.evaluation.analysis.drift import baselines  # noqa: PLC0415 - monitoring extra
            from serval.evaluation.analysis.reference import load_reference  # noqa: PLC0415

            reference = load_reference(path, inputs, outputs, model.keys)
            cached.baselines = dict(baselines(reference.subjects()))
            cached.feature_map = reference.feature_map
        except ImportError as exc:
            cached.reason = f"{exc.name} is not installed (pip install 'serval-server[monitoring]')"
        except (ValueError, OSError) as exc:  # ReferenceFileError names the file and column
            cached.reason = str(exc)
        return cached


def _outputs(model: MonitoredModel, context: ModelContext) -> tuple[PredictionOutputs | None, str]:
    """The prediction (and score) outputs evaluation reads, or why they are unknown."""
    if context.outputs is None:
        return None, "the model has no version loaded: its outputs are unknown"
    spec = model.monitoring
    try:
        return (
            prediction_outputs(
                spec.task_kind, context.outputs, spec.prediction, spec.score, model.keys
            ),
            "",
        )
    except ValueError as exc:
        return None, str(exc)


def _readings(
    spec: MonitoringSpec, quality: QualityResult | None, drift: DriftResult | None
) -> list[Reading]:
    readings: list[Reading] = []
    if spec.quality is not None and quality is not None and quality.value is not None:
        reading = quality_reading(spec.quality, quality.value)
        if reading is not None:
            readings.append(reading)
    if spec.drift is not None and drift is not None and not drift.reason:
        scores = {name: score.score for name, score in drift.features.items()}
        if drift.prediction is not None:
            scores["prediction"] = drift.prediction.score
        readings.extend(
            drift_readings(
                spec.drift, {name: score for name, score in scores.items() if score is not None}
            )
        )
    return readings


def _stamp(path: Path) -> tuple[int, int] | None:
    """The file's modification time and size (None: missing): read again when they change."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size
