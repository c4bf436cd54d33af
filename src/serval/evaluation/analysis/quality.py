"""Quality of a version from its labelled predictions (docs/evaluation-methods.md#quality).

Rows: each label gives values to one row (by key) or to every row of its request (by id);
the prediction and the class scores are read from the logged outputs, the label as the
prediction's type (``ground_truth.class_label``). A label that does not fit its request is
skipped and counted, never fatal: the feedback API checked it when it came.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

import numpy as np

from serval.core.specs.monitoring import QualityMetric
from serval.evaluation.analysis.ground_truth import (
    Family,
    class_label,
    family,
    label_values,
    regression_value,
)
from serval.evaluation.analysis.metrics import SCORED_METRICS, MetricUndefinedError, metric_value
from serval.evaluation.analysis.outputs import PredictionOutputs
from serval.evaluation.analysis.row_values import as_numbers, row_values
from serval.evaluation.recording.tensor_log import decode_tensors
from serval.storage.evaluation import LabelledPrediction


@dataclass(frozen=True, slots=True)
class QualityRows:
    """Labelled rows, aligned: true values, predictions, class scores, prediction times."""

    y_true: np.ndarray[Any, Any]  # float64 (regression) or an object array of classes
    y_pred: np.ndarray[Any, Any]
    y_score: np.ndarray[Any, Any] | None  # [rows, classes], or [rows] (the positive class)
    timestamps: np.ndarray[Any, np.dtype[np.float64]]
    skipped: int  # labels that did not fit their prediction

    def __len__(self) -> int:
        return len(self.y_true)

    def take(self, index: np.ndarray[Any, Any]) -> QualityRows:
        score = self.y_score[index] if self.y_score is not None else None
        return QualityRows(self.y_true[index], self.y_pred[index], score, self.timestamps[index], 0)


@dataclass(frozen=True, slots=True)
class QualityValue:
    """A metric over labelled rows; ``value`` None when the metric is undefined on them
    (``reason`` says why: no rows, one class only for auc, ...)."""

    value: float | None
    count: int  # labelled rows
    skipped: int  # labels that did not fit their prediction
    reason: str = ""


class QualityPoint(NamedTuple):
    start: float  # the bucket's start, time.time() seconds
    value: float | None
    rows: int  # labelled rows in the bucket


def quality_rows(labelled: Sequence[LabelledPrediction], outputs: PredictionOutputs) -> QualityRows:
    """The rows of ``labelled``, read through ``outputs``."""
    kind = family(outputs.datatype)
    regression = outputs.task == "regression"
    y_true: list[Any] = []
    y_pred: list[Any] = []
    scores: list[np.ndarray[Any, Any]] = []
    times: list[float] = []
    skipped = 0
    for item in labelled:
        try:
            rows = _item_rows(item, outputs, kind)
        except (KeyError, ValueError):
            skipped += 1
            continue
        for truth, guess, score in rows:
            if score is not None:
                if scores and np.shape(scores[0]) != np.shape(score):
                    skipped += 1  # another number of classes than the rows before
                    break
                scores.append(score)
            y_true.append(truth)
            y_pred.append(guess)
            times.append(item.prediction.timestamp)
    dtype: type = np.float64 if regression else object
    return QualityRows(
        np.array(y_true, dtype=dtype),
        np.array(y_pred, dtype=dtype),
        np.array(scores, dtype=np.float64) if outputs.score else None,
        np.array(times, dtype=np.float64),
        skipped,
    )


def quality(
    metric: QualityMetric,
    labelled: Sequence[LabelledPrediction],
    outputs: PredictionOutputs,
    rows: int | None = None,
) -> QualityValue:
    """``metric`` over the rows of ``labelled`` (newest label first), the first ``rows`` of
    them when given (a label by id labels every row of its request: the window is in rows)."""
    found = quality_rows(labelled, _needed(metric, outputs))
    if rows is not None and len(found) > rows:
        kept = found.take(np.arange(rows))
        found = QualityRows(kept.y_true, kept.y_pred, kept.y_score, kept.timestamps, found.skipped)
    return _value(metric, found)


def quality_over_time(
    metric: QualityMetric,
    labelled: Sequence[LabelledPrediction],
    bucket_s: float,
    outputs: PredictionOutputs,
) -> list[QualityPoint]:
    """``metric`` per bucket of ``bucket_s`` seconds of prediction time (buckets aligned on
    multiples of ``bucket_s``), oldest first; buckets without rows are left out."""
    if not bucket_s > 0:
        raise ValueError(f"bucket_s: must be > 0, got {bucket_s}")
    rows = quality_rows(labelled, _needed(metric, outputs))
    starts = np.floor(rows.timestamps / bucket_s) * bucket_s
    points: list[QualityPoint] = []
    for start in np.unique(starts):
        bucket = rows.take(np.flatnonzero(starts == start))
        points.append(QualityPoint(float(start), _value(metric, bucket).value, len(bucket)))
    return points


def _needed(metric: QualityMetric, outputs: PredictionOutputs) -> PredictionOutputs:
    """``outputs`` without the class scores for a metric that does not read them, so that a
    record logged without them still counts."""
    return outputs if metric in SCORED_METRICS else replace(outputs, score=None)


def _value(metric: QualityMetric, rows: QualityRows) -> QualityValue:
    if not len(rows):
        return QualityValue(None, 0, rows.skipped, "no labelled rows")
    try:
        value = metric_value(metric, rows.y_true, rows.y_pred, rows.y_score)
    except MetricUndefinedError as exc:
        return QualityValue(None, len(rows), rows.skipped, str(exc))
    if not math.isfinite(value):
        return QualityValue(None, len(rows), rows.skipped, f"{metric} is undefined on these rows")
    return QualityValue(value, len(rows), rows.skipped)


def _item_rows(
    item: LabelledPrediction, outputs: PredictionOutputs, kind: Family
) -> list[tuple[Any, Any, np.ndarray[Any, Any] | None]]:
    """(truth, prediction, class scores) of each row ``item``'s label gives a value to.
    KeyError: an output is not logged; ValueError: the label does not fit."""
    regression = outputs.task == "regression"
    tensors = decode_tensors(item.prediction.outputs)
    predicted = row_values(tensors[outputs.prediction], outputs.prediction).tolist()
    score = _scores(tensors[outputs.score].data) if outputs.score else None
    if score is not None and len(score) != len(predicted):
        raise ValueError("class scores do not match the prediction's rows")
    rows: list[tuple[Any, Any, np.ndarray[Any, Any] | None]] = []
    for row, value in label_values(item.label, len(predicted)):
        if regression:
            truth: Any = regression_value(value)
            guess: Any = float(as_numbers(np.array([predicted[row]]))[0])
            if math.isnan(guess):
                raise ValueError("the prediction is not a number")
        else:
            truth = class_label(value, kind)
            guess = class_label(predicted[row], kind)
        rows.append((truth, guess, score[row] if score is not None else None))
    return rows


def _scores(data: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """Class scores per row: ``[rows, classes]``, or ``[rows]`` for ``[rows]`` / ``[rows, 1]``
    (the positive class's)."""
    scores = np.asarray(data, dtype=np.float64)
    if scores.ndim == 2 and scores.shape[1] == 1:
        return scores.reshape(-1)
    if scores.ndim not in (1, 2):
        raise ValueError(f"class scores of shape {list(scores.shape)}")
    return scores
