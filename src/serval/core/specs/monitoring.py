"""The ``monitoring`` section of ``model.yaml``: continuous evaluation of a model in production
(docs/evaluation.md).

A sample of the requests is logged (inputs, outputs, version, time); ground truth sent later to
the feedback API is joined to them; quality per version and drift against the training
reference are computed over windows of recent rows; crossing a threshold raises an alert once
and may trigger retraining. Every field but ``log`` is optional: a model may log only.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from serval.core.specs.strict import StrictSection

MAX_WINDOW = 1_000_000
DriftMethod = Literal["psi", "jensenshannon", "wasserstein", "ks"]
QualityMetric = Literal["accuracy", "f1", "auc", "log_loss", "mae", "rmse", "r2"]
# Metrics where lower is better: their threshold is ``max``, the others' ``min``.
ERROR_METRICS = frozenset({"log_loss", "mae", "rmse"})
CLASSIFICATION_METRICS = frozenset({"accuracy", "f1", "auc", "log_loss"})
REGRESSION_METRICS = frozenset({"mae", "rmse", "r2"})
# Defaults that do not fire on noise at large windows: bounded distances, not p-values
# (docs/evaluation.md#drift). PSI 0.2 is the industry's "significant shift".
DEFAULT_DRIFT_THRESHOLDS: dict[str, float] = {
    "psi": 0.2,
    "jensenshannon": 0.1,
    "wasserstein": 0.1,
    "ks": 0.1,
}


class LogSpec(StrictSection):
    sample_rate: float = Field(
        default=1.0,
        ge=0.0,
        le=1.0,
        description="Fraction of requests logged, drawn at random per request (0.1: one in ten).",
    )


class DriftSpec(StrictSection):
    method: DriftMethod = Field(
        default="psi",
        description="psi (bins from the reference's deciles), jensenshannon (distance, base "
        "2), wasserstein (divided by the reference's standard deviation) or ks (the "
        "Kolmogorov-Smirnov statistic).",
    )
    threshold: float | None = Field(
        default=None,
        gt=0.0,
        description="A feature whose score reaches it has drifted; default per method: psi "
        "0.2, jensenshannon 0.1, wasserstein 0.1, ks 0.1.",
    )
    window: int = Field(
        default=1000,
        ge=10,
        le=MAX_WINDOW,
        description="Logged rows of a version compared with the reference, the latest first.",
    )

    @property
    def limit(self) -> float:
        """The threshold in force: the one set, or the method's default."""
        return DEFAULT_DRIFT_THRESHOLDS[self.method] if self.threshold is None else self.threshold


class QualitySpec(StrictSection):
    metric: QualityMetric = Field(description="Quality metric over labelled predictions.")
    window: int = Field(
        default=500,
        ge=1,
        le=MAX_WINDOW,
        description="Labelled rows of a version the metric is computed over, the latest first.",
    )
    min: float | None = Field(
        default=None, description="Alert below this value (accuracy, f1, auc, r2)."
    )
    max: float | None = Field(
        default=None, description="Alert above this value (error metrics: log_loss, mae, rmse)."
    )
    bucket_s: float = Field(
        default=3600.0,
        ge=1.0,
        le=366 * 86400,
        description="Width of the time buckets of quality over time (the evaluation's "
        "over_time, the report's plot), seconds of prediction time.",
    )

    @model_validator(mode="after")
    def _threshold_fits_metric(self) -> QualitySpec:
        if self.metric in ERROR_METRICS and self.min is not None:
            raise ValueError(f"min: {self.metric} is an error metric (lower is better): use max")
        if self.metric not in ERROR_METRICS and self.max is not None:
            raise ValueError(f"max: {self.metric} is better when higher: use min")
        return self


class AlertsSpec(StrictSection):
    webhook: str | None = Field(
        default=None,
        description="URL that each alert is POSTed to as JSON (retried with backoff).",
    )

    @field_validator("webhook")
    @classmethod
    def _http_url(cls, url: str | None) -> str | None:
        return _http(url)


class RetrainSpec(StrictSection):
    webhook: str | None = Field(
        default=None, description="URL POSTed the alert's JSON when retraining is triggered."
    )
    command: tuple[str, ...] | None = Field(
        default=None,
        min_length=1,
        description="Command run (no shell) with the alert's JSON on stdin, in the model's "
        "folder, when retraining is triggered.",
    )
    cooldown_s: float = Field(
        default=86400.0,
        ge=0.0,
        description="At most one trigger per this many seconds, per model (over all replicas).",
    )

    @field_validator("webhook")
    @classmethod
    def _http_url(cls, url: str | None) -> str | None:
        return _http(url)

    @model_validator(mode="after")
    def _something_to_run(self) -> RetrainSpec:
        if self.webhook is None and self.command is None:
            raise ValueError("retrain needs a webhook, a command or both")
        return self


class MonitoringSpec(StrictSection):
    log: LogSpec = Field(default_factory=LogSpec, description="Which requests are logged.")
    task: Literal["classification", "regression"] | None = Field(
        default=None,
        description="What the model predicts; needed for quality (default: from the metric).",
    )
    prediction: str | None = Field(
        default=None,
        description="The output compared with ground truth (default: the model's only output).",
    )
    score: str | None = Field(
        default=None,
        description="Output holding class scores (probabilities), for auc and log_loss.",
    )
    reference: str | None = Field(
        default=None,
        description="Parquet file in the model's folder: the training inputs, one column per "
        "feature (and optionally the label column, named as `prediction` or 'label').",
    )
    drift: DriftSpec | None = Field(
        default=None, description="Drift of inputs and prediction against the reference."
    )
    quality: QualitySpec | None = Field(
        default=None, description="Quality per version from the ground truth sent as feedback."
    )
    alerts: AlertsSpec = Field(
        default_factory=AlertsSpec, description="Where alerts go besides the log and metrics."
    )
    retrain: RetrainSpec | None = Field(
        default=None, description="What an alert triggers, at most once per cooldown."
    )

    @field_validator("reference")
    @classmethod
    def _inside_the_folder(cls, reference: str | None) -> str | None:
        if reference is not None and (
            reference.startswith(("/", "\\")) or ".." in reference.replace("\\", "/").split("/")
        ):
            raise ValueError("must be a path inside the model's folder (no '..', not absolute)")
        return reference

    @model_validator(mode="after")
    def _sections_agree(self) -> MonitoringSpec:
        if self.drift is not None and self.reference is None:
            raise ValueError("drift: needs reference (the training inputs to compare with)")
        quality = self.quality
        if quality is not None:
            task = self.task or (
                "regression" if quality.metric in REGRESSION_METRICS else "classification"
            )
            allowed = CLASSIFICATION_METRICS if task == "classification" else REGRESSION_METRICS
            if quality.metric not in allowed:
                raise ValueError(
                    f"quality.metric: {quality.metric} is not a {task} metric "
                    f"(one of {', '.join(sorted(allowed))})"
                )
            if quality.metric in {"auc", "log_loss"} and self.score is None:
                raise ValueError(
                    f"quality.metric: {quality.metric} needs score (the output of class scores)"
                )
        return self

    @property
    def task_kind(self) -> Literal["classification", "regression"]:
        """The task: as set, else what the quality metric implies, else classification."""
        if self.task is not None:
            return self.task
        if self.quality is not None and self.quality.metric in REGRESSION_METRICS:
            return "regression"
        return "classification"


def _http(url: str | None) -> str | None:
    if url is not None and not url.startswith(("http://", "https://")):
        raise ValueError("must be an http:// or https:// URL")
    return url
