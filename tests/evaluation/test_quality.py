"""Quality metrics against scikit-learn computed directly on the same labels, labels read as
the prediction's type, labels by key and by id, skipped labels, undefined metrics, and quality
over time."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn import metrics

from serval.core.tensors.datatypes import DataType
from serval.core.types import TensorSpec
from serval.evaluation.analysis.outputs import PredictionOutputs, prediction_outputs
from serval.evaluation.analysis.quality import (
    QualityPoint,
    quality,
    quality_over_time,
    quality_rows,
)
from tests.evaluation.logged import labelled

BINARY = PredictionOutputs("classification", "label", DataType.INT64, "probabilities")
REGRESSION = PredictionOutputs("regression", "y", DataType.FP32)


def _binary(seed: int, n: int = 200) -> tuple[list, np.ndarray, np.ndarray, np.ndarray]:
    """Requests of 1 to 3 rows with labels by id; returns them and the flat truth, prediction
    and positive-class score."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 2, n)
    positive = np.clip(truth * 0.3 + rng.uniform(0, 0.7, n), 0, 1).astype(np.float32)
    predicted = (positive > 0.5).astype(np.int64)
    items, start = [], 0
    while start < n:
        k = min(int(rng.integers(1, 4)), n - start)
        rows = slice(start, start + k)
        outputs = {
            "label": predicted[rows],
            "probabilities": np.stack([1 - positive[rows], positive[rows]], axis=1),
        }
        value = truth[rows].tolist() if k > 1 else int(truth[start])
        items.append(labelled(outputs, value))
        start += k
    return items, truth, predicted, positive.astype(np.float64)


def test_binary_classification_metrics_match_sklearn() -> None:
    items, truth, predicted, positive = _binary(1)
    expected = {
        "accuracy": metrics.accuracy_score(truth, predicted),
        "f1": metrics.f1_score(truth, predicted),
        "auc": metrics.roc_auc_score(truth, positive),
        "log_loss": metrics.log_loss(truth, np.stack([1 - positive, positive], axis=1)),
    }
    for metric, value in expected.items():
        result = quality(metric, items, BINARY)  # type: ignore[arg-type]
        assert result.count == len(truth)
        assert result.skipped == 0
        assert result.value == pytest.approx(value, rel=1e-6), metric


def test_multiclass_metrics_match_sklearn() -> None:
    rng = np.random.default_rng(2)
    n, classes = 300, 3
    truth = rng.integers(0, classes, n)
    scores = rng.dirichlet(np.ones(classes), n)
    scores[np.arange(n), truth] += 0.5
    scores /= scores.sum(axis=1, keepdims=True)
    predicted = scores.argmax(axis=1)
    items = [
        labelled({"label": predicted[i : i + 1], "probabilities": scores[i : i + 1]}, int(t))
        for i, t in enumerate(truth)
    ]
    outputs = PredictionOutputs("classification", "label", DataType.INT64, "probabilities")
    assert quality("f1", items, outputs).value == pytest.approx(
        metrics.f1_score(truth, predicted, average="macro")
    )
    assert quality("auc", items, outputs).value == pytest.approx(
        metrics.roc_auc_score(truth, scores, multi_class="ovr", average="macro")
    )
    assert quality("log_loss", items, outputs).value == pytest.approx(
        metrics.log_loss(truth, scores)
    )


def test_string_classes_and_labels_by_key() -> None:
    outputs = PredictionOutputs("classification", "label", DataType.BYTES, "scores")
    rows = [("no", "no", 0.2), ("yes", "yes", 0.9), ("no", "yes", 0.6), ("yes", "no", 0.4)]
    items = [
        labelled(
            {
                "label": np.array(["x", predicted, "x"]),
                "scores": np.array([[0.5, 0.5], [1 - score, score], [0.5, 0.5]]),
            },
            truth,
            row=1,  # ground truth by key: it labels row 1 of the request only
        )
        for truth, predicted, score in rows
    ]
    truth = [r[0] for r in rows]
    predicted = [r[1] for r in rows]
    assert quality("accuracy", items, outputs).value == pytest.approx(0.5)
    assert quality("f1", items, outputs).value == pytest.approx(
        metrics.f1_score(truth, predicted, pos_label="yes")  # the greater class is positive
    )
    assert quality("auc", items, outputs).value == pytest.approx(
        metrics.roc_auc_score([t == "yes" for t in truth], [r[2] for r in rows])
    )


def test_labels_are_read_as_the_prediction_type() -> None:
    outputs = PredictionOutputs("classification", "label", DataType.INT64)
    items = [
        labelled({"label": np.array([1])}, "1"),
        labelled({"label": np.array([0])}, 0.0),
        labelled({"label": np.array([1, 1])}, [1, "0"]),
        labelled({"label": np.array([1])}, "cat"),  # not an integer class: skipped
        labelled({"label": np.array([1, 0])}, [1]),  # one value for two rows: skipped
        labelled({"other": np.array([1])}, 1),  # the prediction was not logged: skipped
    ]
    result = quality("accuracy", items, outputs)
    assert (result.value, result.count, result.skipped) == (0.75, 4, 3)
    # accuracy reads no class scores: a record logged without them still counts.
    assert quality("accuracy", items[:1], BINARY).count == 1
    text = PredictionOutputs("classification", "label", DataType.BYTES)
    assert quality("accuracy", [labelled({"label": np.array(["1"])}, 1)], text).value == 1.0


def test_regression_metrics_match_sklearn() -> None:
    rng = np.random.default_rng(3)
    truth = rng.normal(10, 3, 150)
    predicted = (truth + rng.normal(0, 1, 150)).astype(np.float32)
    items = [
        labelled({"y": predicted[i : i + 1].reshape(1, 1)}, float(t)) for i, t in enumerate(truth)
    ]
    p64 = predicted.astype(np.float64)
    assert quality("mae", items, REGRESSION).value == pytest.approx(
        metrics.mean_absolute_error(truth, p64)
    )
    assert quality("rmse", items, REGRESSION).value == pytest.approx(
        math.sqrt(metrics.mean_squared_error(truth, p64))
    )
    assert quality("r2", items, REGRESSION).value == pytest.approx(metrics.r2_score(truth, p64))


def test_undefined_metrics_say_why() -> None:
    assert quality("accuracy", [], BINARY).reason == "no labelled rows"
    one_class = [
        labelled({"label": np.array([1]), "probabilities": np.array([[0.2, 0.8]])}, 1)
        for _ in range(3)
    ]
    result = quality("auc", one_class, BINARY)
    assert result.value is None
    assert "both classes" in result.reason
    one_row = quality("r2", [labelled({"y": np.array([1.0])}, 2.0)], REGRESSION)
    assert one_row.value is None
    assert "at least 2" in one_row.reason
    strings = PredictionOutputs("classification", "label", DataType.BYTES, "scores")
    unknown_columns = [
        labelled({"label": np.array(["a"]), "scores": np.array([[0.1, 0.2, 0.7]])}, "a")
    ]
    assert "which column is which class" in quality("log_loss", unknown_columns, strings).reason


def test_quality_over_time_buckets_by_prediction_time() -> None:
    outputs = PredictionOutputs("classification", "label", DataType.INT64)
    items = [
        labelled({"label": np.array([1])}, 1, timestamp=3_601.0),
        labelled({"label": np.array([1])}, 0, timestamp=3_700.0),
        labelled({"label": np.array([0, 0])}, [0, 0], timestamp=10.0),
        labelled({"label": np.array([1])}, 1, timestamp=7_300.0),
    ]
    assert quality_over_time("accuracy", items, 3_600.0, outputs) == [
        QualityPoint(0.0, 1.0, 2),
        QualityPoint(3_600.0, 0.5, 2),
        QualityPoint(7_200.0, 1.0, 1),
    ]
    with pytest.raises(ValueError, match="bucket_s"):
        quality_over_time("accuracy", items, 0.0, outputs)


def test_rows_hold_the_scores_of_the_labelled_rows() -> None:
    items, truth, _, positive = _binary(4, n=20)
    rows = quality_rows(items, BINARY)
    assert rows.y_true.tolist() == truth.tolist()
    assert rows.y_score is not None
    np.testing.assert_allclose(rows.y_score[:, 1], positive, rtol=1e-6)


def test_the_prediction_output_defaults_to_the_only_one() -> None:
    specs = [
        TensorSpec("y", DataType.FP32, (-1,)),
        TensorSpec("request_id", DataType.BYTES, (-1,)),
    ]
    outputs = prediction_outputs("regression", specs, leave_out={"request_id"})
    assert (outputs.prediction, outputs.datatype) == ("y", DataType.FP32)
    with pytest.raises(ValueError, match=r"monitoring\.prediction: the model has outputs y, id"):
        prediction_outputs("regression", [specs[0], TensorSpec("id", DataType.BYTES, (-1,))])
    with pytest.raises(ValueError, match=r"monitoring\.score: no output 'p'"):
        prediction_outputs("classification", specs, "y", "p")
