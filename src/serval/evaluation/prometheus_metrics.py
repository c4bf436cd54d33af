"""Prometheus families of continuous evaluation (docs/metrics.md#continuous-evaluation): quality
and drift per model and version from the latest evaluation, and the prediction log's and
feedback's counters. A collector read at scrape time: nothing is paid per request."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from serval.evaluation.recording.prediction_log import LogCounts
from serval.evaluation.results import ModelEvaluation

Metric = CounterMetricFamily | GaugeMetricFamily


class EvaluationMetrics(Collector):
    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        evaluations: Mapping[str, ModelEvaluation],
        log_counts: Callable[[], LogCounts],
        queued: Callable[[], int],
        joined: Mapping[str, int],
        alerts: Mapping[tuple[str, str], int],
    ) -> None:
        """``evaluations``: each model's latest evaluation; ``joined``: ground truths joined
        to a logged prediction, per model; ``alerts``: alerts raised, per (model, kind)."""
        self._evaluations = evaluations
        self._log_counts = log_counts
        self._queued = queued
        self._joined = joined
        self._alerts = alerts
        registry.register(self)

    def collect(self) -> Iterator[Metric]:
        evaluations = list(self._evaluations.values())
        quality = GaugeMetricFamily(
            "serval_model_quality",
            "The quality metric of a version over its last window of labelled predictions.",
            labels=("model", "version", "metric"),
        )
        drift = GaugeMetricFamily(
            "serval_model_drift",
            "Drift score of an input feature of a version against the training reference.",
            labels=("model", "version", "feature", "method"),
        )
        prediction_drift = GaugeMetricFamily(
            "serval_model_prediction_drift",
            "Drift score of a version's predictions against the reference's labels.",
            labels=("model", "version", "method"),
        )
        for evaluation in evaluations:
            for version, result in evaluation.versions.items():
                labels = (evaluation.model, str(version))
                if result.quality is not None and result.quality.value is not None:
                    quality.add_metric((*labels, result.quality.metric), result.quality.value)
                if result.drift is None:
                    continue
                method = result.drift.method
                for feature, score in result.drift.features.items():
                    if score.score is not None:
                        drift.add_metric((*labels, feature, method), score.score)
                predicted = result.drift.prediction
                if predicted is not None and predicted.score is not None:
                    prediction_drift.add_metric((*labels, method), predicted.score)
        yield quality
        yield drift
        yield prediction_drift
        counts = self._log_counts()
        records = CounterMetricFamily(
            "serval_prediction_log_records",
            "Predictions sampled for the log, by outcome: logged (written to the store), "
            "dropped (the queue was full), spilled (to the local file while the store was "
            "unreachable; replayed later).",
            labels=("model", "outcome"),
        )
        for outcome, per_model in (
            ("logged", counts.logged),
            ("dropped", counts.dropped),
            ("spilled", counts.spilled),
        ):
            for model, count in per_model.items():
                records.add_metric((model, outcome), count)
        yield records
        yield GaugeMetricFamily(
            "serval_prediction_log_queued",
            "Logged predictions not written yet (queued, or being written).",
            value=self._queued(),
        )
        yield _counter(
            "serval_ground_truth_matched",
            "Ground truths joined to a logged prediction when they arrived, per model.",
            ("model",),
            (((model,), count) for model, count in self._joined.items()),
        )
        yield _counter(
            "serval_evaluation_alerts",
            "Alerts raised by continuous evaluation (quality or drift), per model and kind.",
            ("model", "kind"),
            ((key, count) for key, count in self._alerts.items()),
        )


def _counter(
    name: str,
    documentation: str,
    labels: tuple[str, ...],
    samples: Iterator[tuple[tuple[str, ...], int]],
) -> CounterMetricFamily:
    family = CounterMetricFamily(name, documentation, labels=labels)
    for values, count in samples:
        family.add_metric(values, count)
    return family
