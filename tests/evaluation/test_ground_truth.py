"""Ground truth checked as the feedback API will (type and number of rows, with the reason),
and read as the prediction's type."""

from __future__ import annotations

import orjson
import pytest

from serval.core.tensors.datatypes import DataType
from serval.evaluation.analysis.ground_truth import (
    check_ground_truth,
    class_label,
    family,
    label_values,
)
from serval.storage.evaluation import Label


@pytest.mark.parametrize(
    ("datatype", "value", "expected"),
    [
        (DataType.INT64, 1, 1),
        (DataType.INT64, 1.0, 1),
        (DataType.INT64, " 2", 2),
        (DataType.UINT8, "-3", -3),
        (DataType.BYTES, "cat", "cat"),
        (DataType.BYTES, 1, "1"),
        (DataType.FP32, 1, 1.0),
        (DataType.FP64, "0.5", 0.5),
        (DataType.BOOL, True, True),
        (DataType.BOOL, 0, False),
        (DataType.BOOL, "true", True),
    ],
)
def test_class_labels_read_as_the_prediction(
    datatype: DataType, value: object, expected: object
) -> None:
    label = class_label(value, family(datatype))
    assert label == expected
    assert type(label) is type(expected)


@pytest.mark.parametrize(
    ("datatype", "value", "reason"),
    [
        (DataType.INT64, 1.5, "1.5 is not an integer"),
        (DataType.INT64, "cat", '"cat" is not an integer'),
        (DataType.INT64, True, "true is a boolean"),
        (DataType.BYTES, False, "false is a boolean"),
        (DataType.BYTES, 2.5, "2.5 is not a string or an integer"),
        (DataType.BOOL, 2, "2 is not a boolean"),
        (DataType.FP32, "x", '"x" is not a finite number'),
    ],
)
def test_classes_that_do_not_fit_say_why(datatype: DataType, value: object, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        check_ground_truth("classification", datatype, 1, value)  # type: ignore[arg-type]


def test_one_value_per_row() -> None:
    check_ground_truth("classification", DataType.INT64, 1, 1)
    check_ground_truth("classification", DataType.INT64, 1, [1])
    check_ground_truth("classification", DataType.BYTES, 3, ["a", "b", 3])
    check_ground_truth("regression", DataType.FP32, 0, [1.5, 2])  # rows not known: any list
    check_ground_truth("regression", DataType.FP32, 0, 7)
    with pytest.raises(ValueError, match="a request of 3 rows is a list of 3 values"):
        check_ground_truth("classification", DataType.INT64, 3, 1)
    with pytest.raises(ValueError, match="2 values for a request of 3 rows"):
        check_ground_truth("classification", DataType.INT64, 3, [1, 2])
    with pytest.raises(ValueError, match="empty list"):
        check_ground_truth("regression", DataType.FP32, 0, [])
    with pytest.raises(ValueError, match=r"ground truth\[1\]: .*1.5 is not an integer"):
        check_ground_truth("classification", DataType.INT64, 2, [1, 1.5])
    with pytest.raises(ValueError, match=r"ground truth\[0\]: \[1\] is not one value"):
        check_ground_truth("classification", DataType.INT64, 1, [[1]])


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (True, "true is not a finite number"),
        ("1.5", '"1.5" is not a finite number'),
        (None, "null is not a ground truth"),
        ({"y": 1}, "is not one value"),
    ],
)
def test_regression_targets_are_numbers(value: object, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        check_ground_truth("regression", DataType.FP32, 1, value)  # type: ignore[arg-type]


def test_label_values_give_rows() -> None:
    def label(value: object, row: int | None = None) -> Label:
        return Label(orjson.dumps(value), row, 0.0)

    assert label_values(label([1, 0, 1]), 3) == [(0, 1), (1, 0), (2, 1)]
    assert label_values(label("a"), 1) == [(0, "a")]
    assert label_values(label("a", row=2), 3) == [(2, "a")]  # by key: that row only
    assert label_values(label(["a"], row=0), 3) == [(0, "a")]
    for bad, rows in [(label([1, 2]), 3), (label(1), 2), (label(1, row=3), 3)]:
        with pytest.raises(ValueError):
            label_values(bad, rows)
