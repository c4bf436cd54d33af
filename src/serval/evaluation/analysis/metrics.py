"""The quality metrics (scikit-learn: the ``monitoring`` extra) on aligned label, prediction and
class-score arrays (docs/evaluation-methods.md#quality).

Classification: ``accuracy``; ``f1``, binary when the rows show two classes (the positive class
is the greater: 1, true, "yes" of "no"/"yes") and the macro average otherwise; ``auc``, binary
on the positive class's score (column 1 of two, or the only column) and one-vs-rest macro for
more classes; ``log_loss``. Class-score columns follow the sorted classes (scikit-learn's
``classes_``): integer classes 0..n-1 for n columns, else the classes seen must number n.
Regression: ``mae``, ``rmse``, ``r2``.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

from serval.core.specs.monitoring import QualityMetric

# The metrics that read class scores (monitoring.score), not only the predicted class.
SCORED_METRICS = frozenset({"auc", "log_loss"})


class MetricUndefinedError(ValueError):
    """The metric has no value on these rows; the message says why."""


def metric_value(
    metric: QualityMetric,
    y_true: np.ndarray[Any, Any],
    y_pred: np.ndarray[Any, Any],
    y_score: np.ndarray[Any, Any] | None = None,
) -> float:
    """``metric`` of the rows; MetricUndefinedError when it has no value on them."""
    from sklearn import metrics  # noqa: PLC0415 - the monitoring extra

    truth, guess = _typed(y_true), _typed(y_pred)
    with warnings.catch_warnings():
        # An undefined value (r2 of one row) comes back as NaN, which the caller reports.
        warnings.simplefilter("ignore")
        try:
            if metric == "accuracy":
                return float(metrics.accuracy_score(truth, guess))
            if metric == "f1":
                classes = sorted(set(truth.tolist()) | set(guess.tolist()))
                if len(classes) == 2:
                    return float(metrics.f1_score(truth, guess, pos_label=classes[-1]))
                return float(metrics.f1_score(truth, guess, average="macro", zero_division=0))
            if metric == "mae":
                return float(metrics.mean_absolute_error(truth, guess))
            if metric == "rmse":
                return math.sqrt(float(metrics.mean_squared_error(truth, guess)))
            if metric == "r2":
                if len(truth) < 2:
                    raise MetricUndefinedError("r2 needs at least 2 labelled rows")
                return float(metrics.r2_score(truth, guess))
            if y_score is None:
                raise MetricUndefinedError(f"{metric} needs the class scores (monitoring.score)")
            return _scored(metric, truth, guess, y_score)
        except MetricUndefinedError:
            raise
        except ValueError as exc:  # scikit-learn's: one class only, scores that do not fit
            raise MetricUndefinedError(f"{metric}: {exc}") from exc


def _scored(
    metric: QualityMetric,
    truth: np.ndarray[Any, Any],
    guess: np.ndarray[Any, Any],
    y_score: np.ndarray[Any, Any],
) -> float:
    from sklearn import metrics  # noqa: PLC0415 - the monitoring extra

    columns = 2 if y_score.ndim == 1 else y_score.shape[1]
    classes = score_classes(truth, guess, columns)
    if columns == 2:
        positive = y_score if y_score.ndim == 1 else y_score[:, 1]
        is_positive = truth == classes[1]
        if metric == "auc":
            if is_positive.all() or not is_positive.any():
                raise MetricUndefinedError("auc needs labels of both classes")
            return float(metrics.roc_auc_score(is_positive, positive))
        return float(metrics.log_loss(is_positive, positive, labels=[False, True]))
    if metric == "auc":
        return float(
            metrics.roc_auc_score(
                truth, y_score, multi_class="ovr", average="macro", labels=classes
            )
        )
    return float(metrics.log_loss(truth, y_score, labels=classes))


def score_classes(
    truth: np.ndarray[Any, Any], guess: np.ndarray[Any, Any], columns: int
) -> list[Any]:
    """The class of each class-score column (sorted, as scikit-learn's ``classes_``).

    MetricUndefinedError when the rows do not tell: classes that are not 0..columns-1 and not
    all seen in the labels and predictions."""
    seen = sorted(set(truth.tolist()) | set(guess.tolist()))
    if all(_is_index(value, columns) for value in seen):
        return [type(seen[0])(index) for index in range(columns)]
    if len(seen) == columns:
        return seen
    raise MetricUndefinedError(
        f"the class scores have {columns} columns but the rows show {len(seen)} classes; "
        "which column is which class is told only when the classes are 0..n-1 or all seen"
    )


def _is_index(value: object, columns: int) -> bool:
    if isinstance(value, bool):
        return columns == 2
    if isinstance(value, int | float):
        return float(value).is_integer() and 0 <= value < columns
    return False


def _typed(values: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """An object array of classes as numpy's own dtype (int64, str, bool), as scikit-learn
    wants."""
    return np.array(values.tolist()) if values.dtype == object else values
