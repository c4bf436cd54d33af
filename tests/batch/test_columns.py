"""How columns feed model inputs, and the errors that say why they cannot: each names the
input, the columns found and what was expected, before any row is scored."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from serval.batch.columns import map_columns, to_tensors
from serval.batch.errors import BatchInputError
from serval.core.tensors.datatypes import DataType
from serval.core.types import TensorSpec

X3 = TensorSpec("x", DataType.FP32, (-1, 3))
SCHEMA = pa.schema(
    [("id", pa.int64()), ("a", pa.float32()), ("b", pa.float64()), ("c", pa.int32())]
)


def test_every_non_key_column_in_file_order_when_their_count_matches() -> None:
    mapping = map_columns([X3], SCHEMA, keys=["id"])
    assert mapping.describe() == {"x": ["a", "b", "c"]}
    assert mapping.read_columns == ["id", "a", "b", "c"]


def test_a_list_column_and_one_dimensional_inputs_map_by_name() -> None:
    schema = pa.schema([("x", pa.list_(pa.float32(), 3)), ("age", pa.int64()), ("id", pa.string())])
    age = TensorSpec("age", DataType.FP64, (-1,))
    mapping = map_columns([X3, age], schema, keys=["id"])
    assert mapping.describe() == {"x": ["x"], "age": ["age"]}
    batch = pa.record_batch(
        {
            "id": ["p", "q"],
            "x": pa.FixedSizeListArray.from_arrays(pa.array(np.arange(6, dtype=np.float32)), 3),
            "age": [30, 40],
        }
    )
    x, age_tensor = to_tensors(mapping, batch, "f.parquet")
    np.testing.assert_array_equal(x.data, np.arange(6, dtype=np.float32).reshape(2, 3))
    assert age_tensor.data.dtype == np.float64
    assert age_tensor.data.tolist() == [30.0, 40.0]


def test_map_names_the_columns_of_an_input() -> None:
    mapping = map_columns([X3], SCHEMA, explicit={"x": ["c", "b", "a"]})
    assert mapping.describe() == {"x": ["c", "b", "a"]}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, r"input 'x' takes 3 numeric columns .* are 4: id, a, b, c"),
        ({"columns": ["a", "b"]}, r"--columns in f.parquet are 2: a, b"),
        (
            {"keys": ["nope"]},
            r"--key: column\(s\) 'nope' not found in f.parquet \(its columns: id, a, b, c\)",
        ),
        ({"explicit": {"y": ["a"]}}, r"--map y=...: the model has no input 'y' \(its inputs: x\)"),
        (
            {"explicit": {"x": ["a", "b"]}},
            r"--map x: input 'x' has shape \[-1, 3\], so it takes 3 numeric",
        ),
    ],
)
def test_mapping_errors_name_input_columns_and_expectation(
    kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(BatchInputError, match=message):
        map_columns([X3], SCHEMA, source="f.parquet", **kwargs)  # type: ignore[arg-type]


def test_a_wrong_type_and_a_wrong_list_size_are_named() -> None:
    schema = pa.schema([("x", pa.list_(pa.float32(), 4))])
    with pytest.raises(
        BatchInputError,
        match=r"input 'x' takes rows of 3 values, but column 'x' of f holds lists of 4",
    ):
        map_columns([X3], schema, source="f")
    schema = pa.schema([("a", pa.string()), ("b", pa.float32()), ("c", pa.float32())])
    with pytest.raises(
        BatchInputError,
        match=r"column 'a' of f has type string, but input 'x' \(FP32\) takes numbers",
    ):
        map_columns([X3], schema, source="f")


def test_two_inputs_without_names_cannot_be_guessed() -> None:
    two = [X3, TensorSpec("z", DataType.FP32, (-1, 2))]
    with pytest.raises(
        BatchInputError, match=r"cannot tell which columns of f feed model input\(s\) 'x' .*'z'"
    ):
        map_columns(two, SCHEMA, source="f")


def test_a_null_is_named_with_its_row() -> None:
    mapping = map_columns([X3], SCHEMA, keys=["id"])
    batch = pa.record_batch(
        {
            "id": [1, 2],
            "a": pa.array([1.0, None], pa.float32()),
            "b": [1.0, 2.0],
            "c": pa.array([1, 2], pa.int32()),
        }
    )
    with pytest.raises(
        BatchInputError, match=r"f.parquet rows 10-: column 'a' has no value \(null\) at row 1"
    ):
        to_tensors(mapping, batch, "f.parquet rows 10-")
