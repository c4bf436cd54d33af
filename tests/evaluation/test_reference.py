"""The reference file and the feature map: which column is which feature, how each is typed,
the errors that name the file and the column, and features read back out of logged requests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from serval.core.tensors.datatypes import DataType
from serval.core.types import TensorSpec
from serval.evaluation.analysis.outputs import PredictionOutputs
from serval.evaluation.analysis.reference import PREDICTION, ReferenceFileError, load_reference
from tests.evaluation.logged import logged

CLASSIFIER = PredictionOutputs("classification", "label", DataType.INT64)


def _write(path: Path, columns: dict[str, list[object]] | pa.Table) -> Path:
    table = columns if isinstance(columns, pa.Table) else pa.table(columns)
    pq.write_table(table, path)
    return path


def _matrix(width: int) -> list[TensorSpec]:
    return [TensorSpec("x", DataType.FP32, (-1, width))]


def test_a_matrix_input_takes_the_first_columns_in_file_order_but_the_label(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "ref.parquet",
        {"b": [1.0, 2.0], "label": [0, 1], "a": [3, 4], "c": ["u", "v"], "id": [7, 8]},
    )
    reference = load_reference(path, _matrix(3), CLASSIFIER)
    assert list(reference.features) == ["b", "a", "c"]  # "id", past the width, is not compared
    assert reference.features["a"].kind == "numeric"
    assert reference.features["a"].values.dtype == np.float64
    assert reference.features["c"].kind == "categorical"
    assert reference.features["c"].values.tolist() == ["u", "v"]
    assert reference.label is not None
    assert reference.label.kind == "categorical"  # a classifier's label, though integers
    assert reference.label.values.tolist() == ["0", "1"]
    assert list(reference.subjects()) == ["b", "a", "c", PREDICTION]


def test_a_matrix_of_unknown_width_takes_every_column(tmp_path: Path) -> None:
    path = _write(tmp_path / "ref.parquet", {"a": [1.0], "b": [2.0], "label": [1]})
    reference = load_reference(path, _matrix(-1), None)
    assert list(reference.features) == ["a", "b"]
    assert reference.label is None  # no prediction to compare it with
    assert list(reference.subjects()) == ["a", "b"]


def test_too_few_columns_for_the_matrix_is_an_error_naming_file_and_columns(
    tmp_path: Path,
) -> None:
    path = _write(tmp_path / "ref.parquet", {"a": [1.0], "label": [1]})
    with pytest.raises(ReferenceFileError, match=r"reference ref.parquet: input 'x' has 3 "):
        load_reference(path, _matrix(3), CLASSIFIER)


def test_one_column_inputs_take_the_column_of_their_name(tmp_path: Path) -> None:
    path = _write(tmp_path / "ref.parquet", {"age": [30, 40], "city": ["a", "b"], "y": [1.5, 2]})
    inputs = [
        TensorSpec("city", DataType.BYTES, (-1,)),
        TensorSpec("age", DataType.INT64, (-1, 1)),
        TensorSpec("request_id", DataType.BYTES, (-1,)),
    ]
    outputs = PredictionOutputs("regression", "y", DataType.FP32)
    reference = load_reference(path, inputs, outputs, leave_out={"request_id"})
    assert list(reference.features) == ["city", "age"]
    assert reference.label is not None
    assert reference.label.name == "y"  # named as the prediction output, before "label"
    assert reference.label.kind == "numeric"  # a regression's target


def test_a_missing_column_names_it(tmp_path: Path) -> None:
    path = _write(tmp_path / "ref.parquet", {"age": [30]})
    inputs = [TensorSpec("age", DataType.INT64, (-1,)), TensorSpec("zip", DataType.BYTES, (-1,))]
    with pytest.raises(ReferenceFileError, match=r"ref.parquet: no column 'zip'.*columns: age"):
        load_reference(path, inputs)


def test_a_wide_input_beside_others_is_an_error(tmp_path: Path) -> None:
    path = _write(tmp_path / "ref.parquet", {"age": [30]})
    inputs = [TensorSpec("age", DataType.INT64, (-1,)), TensorSpec("v", DataType.FP32, (-1, 4))]
    with pytest.raises(ReferenceFileError, match=r"input 'v' has shape \[-1, 4\]"):
        load_reference(path, inputs)


def test_an_image_input_is_not_tabular(tmp_path: Path) -> None:
    path = _write(tmp_path / "ref.parquet", {"a": [1.0]})
    with pytest.raises(ReferenceFileError, match="tabular"):
        load_reference(path, [TensorSpec("img", DataType.FP32, (-1, 3, 8, 8))])


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (None, "no such file"),
        (b"not parquet at all", "cannot be read as Parquet"),
        (pa.table({"a": pa.array([], pa.float64())}), "has no rows"),
        (pa.table({"a": pa.array([None, None], pa.float64())}), "column 'a' has no values"),
        (pa.table({"a": pa.array([1, 2], pa.timestamp("s"))}), "column 'a' is timestamp"),
    ],
)
def test_files_that_cannot_be_used_name_the_file(
    tmp_path: Path, content: bytes | pa.Table | None, reason: str
) -> None:
    path = tmp_path / "ref.parquet"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        _write(path, content)
    with pytest.raises(ReferenceFileError, match=f"reference ref.parquet: .*{reason}"):
        load_reference(path, [TensorSpec("a", DataType.FP32, (-1,))])


def test_missing_values_are_left_out_and_types_are_read(tmp_path: Path) -> None:
    table = pa.table(
        {
            "n": pa.array([1, None, 3], pa.int32()),
            "f": pa.array([0.5, float("nan"), None]),
            "b": pa.array([True, None, False]),
            "d": pa.array(["x", "y", None]).dictionary_encode(),
        }
    )
    path = _write(tmp_path / "ref.parquet", table)
    reference = load_reference(path, _matrix(4))
    assert reference.features["n"].values.tolist() == [1.0, 3.0]
    assert reference.features["f"].values.tolist() == [0.5]
    assert reference.features["b"].values.tolist() == ["true", "false"]
    assert reference.features["d"].values.tolist() == ["x", "y"]


def test_a_feature_named_prediction_collides_with_the_prediction(tmp_path: Path) -> None:
    path = _write(tmp_path / "ref.parquet", {"prediction": [1.0], "label": [1]})
    with pytest.raises(ReferenceFileError, match="feature 'prediction'"):
        load_reference(path, [TensorSpec("prediction", DataType.FP32, (-1,))], CLASSIFIER)


def test_columns_of_logged_requests_give_one_value_per_row(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "ref.parquet", {"a": [1.0, 2.0], "c": ["u", "v"], "label": ["no", "yes"]}
    )
    outputs = PredictionOutputs("classification", "label", DataType.BYTES)
    feature_map = load_reference(path, _matrix(2), outputs).feature_map
    records = [
        logged(
            {"x": np.array([[1.5, 7], [2.5, 8]], np.float32)},
            {"label": np.array(["yes", "no"])},
        ),
        logged({"x": np.array([[np.nan, 1]], np.float32)}, {"label": np.array(["maybe"])}),
        logged({"other": np.array([1.0])}, {}),  # neither the input nor the output: nothing
    ]
    columns = feature_map.columns(records)
    np.testing.assert_array_equal(columns["a"], [1.5, 2.5, np.nan])
    assert columns["c"].tolist() == ["7", "8", "1"]  # numbers logged for a categorical column
    assert columns[PREDICTION].tolist() == ["yes", "no", "maybe"]


def test_one_column_inputs_read_rows_of_either_shape(tmp_path: Path) -> None:
    path = _write(tmp_path / "ref.parquet", {"age": [30.0], "city": ["a"]})
    inputs = [TensorSpec("age", DataType.FP32, (-1, 1)), TensorSpec("city", DataType.BYTES, (-1,))]
    feature_map = load_reference(path, inputs).feature_map
    records = [
        logged({"age": np.array([[31.0], [32.0]]), "city": np.array(["a", "b"])}),
        logged({"age": np.array([33.0]), "city": np.array([b"c"], dtype=object)}),
    ]
    columns = feature_map.columns(records)
    assert columns["age"].tolist() == [31.0, 32.0, 33.0]
    assert columns["city"].tolist() == ["a", "b", "c"]
    assert PREDICTION not in columns
    assert feature_map.columns([])["age"].dtype == np.float64


def test_a_regression_label_column_must_hold_numbers(tmp_path: Path) -> None:
    path = _write(tmp_path / "ref.parquet", {"a": [1.0], "label": ["high"]})
    outputs = PredictionOutputs("regression", "y", DataType.FP32)
    with pytest.raises(ReferenceFileError, match="column 'label' is string, not numbers"):
        load_reference(path, [TensorSpec("a", DataType.FP32, (-1,))], outputs)
