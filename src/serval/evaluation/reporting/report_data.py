"""What ``serval monitor report`` shows, computed from the store and the model repository with
the evaluator's own functions (quality.py, drift.py, reference.py), but without raising alerts:
the report reads, it never acts.

The server is not running, so the model's inputs and outputs are derived from its logged
tensors (names, datatypes, row shapes of the newest record). Each missing piece (no quality
section, no labels, no reference, an unreadable reference) leaves a reason in place of its
numbers, never an error.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from serval.core.types import TensorSpec
from serval.evaluation.analysis.drift import FeatureDrift, baselines, drift
from serval.evaluation.analysis.outputs import PredictionOutputs, prediction_outputs
from serval.evaluation.analysis.quality import (
    QualityPoint,
    QualityValue,
    quality,
    quality_over_time,
)
from serval.evaluation.analysis.reference import PREDICTION, Column, ColumnKind, Reference
from serval.evaluation.analysis.row_values import as_categories, as_numbers, row_values
from serval.evaluation.recording.monitored import MonitoredModel
from serval.evaluation.recording.tensor_log import decode_tensors
from serval.evaluation.reporting.logged_model import newest_specs, read_reference
from serval.storage.evaluation import (
    Alert,
    EvaluationStore,
    LabelledPrediction,
    LoggedPrediction,
    Trigger,
    VersionCounts,
)

# Labelled predictions per version read for quality over time (the headline value uses the
# quality window): the report's history, bounded so that a long log does not fill memory.
HISTORY = 50_000
DISTRIBUTION_ROWS = 1000  # logged rows per version for distributions when drift sets no window
MIN_POINTS = 6  # fewer buckets than this over the data's span: narrower buckets
_NICE_BUCKETS = (1, 5, 10, 30, 60, 300, 600, 1800, 3600, 3 * 3600, 6 * 3600, 86400, 7 * 86400)


@dataclass(frozen=True, slots=True)
class VersionReport:
    version: int
    counts: VersionCounts
    quality: QualityValue | None = None
    over_time: tuple[QualityPoint, ...] = ()
    drift: dict[str, FeatureDrift] = field(default_factory=dict)
    drift_rows: int = 0
    # Recent values per drift subject (features and "prediction"): the distributions.
    current: dict[str, np.ndarray[Any, Any]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ReportData:
    model: MonitoredModel
    generated: float
    location: str  # the store's
    versions: tuple[VersionReport, ...]
    outputs: PredictionOutputs | None
    outputs_reason: str
    reference: Reference | None
    reference_reason: str
    bucket_s: float
    alerts: list[Alert]
    triggers: list[Trigger]

    def subject_kind(self, subject: str) -> ColumnKind:
        if self.reference is not None:
            column = self.reference.subjects().get(subject)
            if column is not None:
                return column.kind
        if subject == PREDICTION and self.outputs is not None:
            return "numeric" if self.outputs.task == "regression" else "categorical"
        return "numeric"

    def reference_column(self, subject: str) -> Column | None:
        return None if self.reference is None else self.reference.subjects().get(subject)


def gather(store: EvaluationStore, model: MonitoredModel) -> ReportData:
    """Everything the report shows; ``NothingLoggedError`` when nothing of ``model`` is logged."""
    from serval.evaluation.reporting.export import NothingLoggedError  # noqa: PLC0415 - pyarrow

    counts = store.counts(model.name)
    if not counts:
        raise NothingLoggedError(f"model {model.name!r}: nothing logged in {store.location}")
    spec = model.monitoring
    inputs, output_specs = newest_specs(store, model.name)
    outputs, outputs_reason = _outputs(model, output_specs)
    reference, reference_reason = read_reference(model, inputs, outputs)
    labelled: dict[int, list[LabelledPrediction]] = {}
    if spec.quality is not None and outputs is not None:
        limit = max(spec.quality.window, HISTORY)
        labelled = {v: store.labelled(model.name, v, limit) for v in counts}
    bucket_s = choose_bucket(
        [item.prediction.timestamp for items in labelled.values() for item in items],
        spec.quality.bucket_s if spec.quality is not None else 3600.0,
    )
    versions = []
    for version, version_counts in sorted(counts.items()):
        report = VersionReport(version, version_counts)
        if spec.quality is not None and outputs is not None:
            items = labelled[version]
            report = _with_quality(
                report, spec.quality.metric, items, spec.quality.window, outputs, bucket_s
            )
        if reference is not None:
            window = spec.drift.window if spec.drift is not None else DISTRIBUTION_ROWS
            records = store.recent_predictions(model.name, version, window)
            report = _with_drift(report, model, reference, records, window)
        versions.append(report)
    return ReportData(
        model,
        time.time(),
        store.location,
        tuple(versions),
        outputs,
        outputs_reason,
        reference,
        reference_reason,
        bucket_s,
        store.alerts(model.name),
        store.triggers(model.name),
    )


def choose_bucket(timestamps: list[float], configured: float) -> float:
    """``configured`` (``quality.bucket_s``), or narrower when the data spans fewer than
    ``MIN_POINTS`` of it: the widest "nice" width (1 s, 5 s, ... 1 week) giving that many."""
    if not timestamps:
        return configured
    span = max(timestamps) - min(timestamps)
    if span >= configured * MIN_POINTS:
        return configured
    wanted = span / MIN_POINTS
    fitting = [width for width in _NICE_BUCKETS if width <= wanted]
    return float(fitting[-1]) if fitting else 1.0


def _with_quality(
    report: VersionReport,
    metric: Any,
    items: list[LabelledPrediction],
    window: int,
    outputs: PredictionOutputs,
    bucket_s: float,
) -> VersionReport:
    # The store gives the newest label first: the window is the first ``window``.
    value = quality(metric, items[:window], outputs)
    points = quality_over_time(metric, items, bucket_s, outputs)
    return replace(report, quality=value, over_time=tuple(points))


def _with_drift(
    report: VersionReport,
    model: MonitoredModel,
    reference: Reference,
    records: list[LoggedPrediction],
    window: int,
) -> VersionReport:
    columns = {
        subject: values[:window]
        for subject, values in reference.feature_map.columns(records).items()
    }
    if PREDICTION not in columns and model.monitoring.prediction is not None:
        columns[PREDICTION] = _predictions(records, model.monitoring.prediction)[:window]
    rows = max((len(values) for values in columns.values()), default=0)
    scores: dict[str, FeatureDrift] = {}
    spec = model.monitoring.drift
    if spec is not None and rows:
        scores = drift(baselines(reference.subjects()), columns, spec.method, spec.limit)
    return replace(report, drift=scores, drift_rows=rows, current=columns)


def _predictions(records: list[LoggedPrediction], output: str) -> np.ndarray[Any, Any]:
    """The prediction per row of ``records`` (for a reference without a label column)."""
    parts = []
    for record in records:
        tensor = decode_tensors(record.outputs).get(output)
        if tensor is not None:
            try:
                values = row_values(tensor, output)
            except ValueError:
                continue
            parts.append(
                as_numbers(values) if values.dtype.kind in "biuf" else as_categories(values)
            )
    return np.concatenate(parts) if parts else np.empty(0)


def _outputs(
    model: MonitoredModel, specs: tuple[TensorSpec, ...]
) -> tuple[PredictionOutputs | None, str]:
    if not specs:
        return None, "no outputs are logged"
    spec = model.monitoring
    try:
        return prediction_outputs(
            spec.task_kind, specs, spec.prediction, spec.score, model.keys
        ), ""
    except ValueError as exc:
        return None, str(exc)
