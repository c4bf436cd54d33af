"""Datatype conversion that keeps every value."""

from __future__ import annotations

import numpy as np
import pytest

from serval.core.errors import InvalidInputError
from serval.core.tensors.casting import cast_values
from serval.core.tensors.datatypes import DataType


def test_numbers_convert_to_floats() -> None:
    out = cast_values(np.array([1.25, 2.0]), DataType.FP64, DataType.FP32, "x")
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, [1.25, 2.0])
    ints = cast_values(np.array([3, 4]), DataType.INT64, DataType.FP64, "x")
    np.testing.assert_array_equal(ints, [3.0, 4.0])


def test_integral_floats_and_in_range_integers_convert_to_integers() -> None:
    out = cast_values(np.array([1.0, -2.0]), DataType.FP64, DataType.INT32, "x")
    assert out.dtype == np.int32
    np.testing.assert_array_equal(out, [1, -2])
    small = cast_values(np.array([0, 255]), DataType.INT64, DataType.UINT8, "x")
    np.testing.assert_array_equal(small, [0, 255])


@pytest.mark.parametrize(
    ("values", "given", "wanted", "why"),
    [
        ([1.5], DataType.FP64, DataType.INT64, "non-integral"),
        ([float("nan")], DataType.FP64, DataType.INT64, "non-integral"),
        ([256], DataType.INT64, DataType.UINT8, r"outside \[0, 255\]"),
        ([-1], DataType.INT64, DataType.UINT32, "outside"),
        ([2], DataType.INT64, DataType.BOOL, "other than 0 and 1"),
    ],
)
def test_a_value_that_would_change_is_refused(
    values: list[float], given: DataType, wanted: DataType, why: str
) -> None:
    with pytest.raises(InvalidInputError, match=f"column 'a': expected datatype {wanted}.*{why}"):
        cast_values(np.array(values, dtype=given.numpy_dtype), given, wanted, "column 'a'")


def test_bytes_and_numbers_never_convert() -> None:
    with pytest.raises(InvalidInputError, match="does not convert"):
        cast_values(np.array([b"1"], dtype=object), DataType.BYTES, DataType.FP32, "x")
    with pytest.raises(InvalidInputError, match="does not convert"):
        cast_values(np.array([1.0]), DataType.FP64, DataType.BYTES, "x")


def test_bools_become_integers() -> None:
    out = cast_values(np.array([True, False]), DataType.BOOL, DataType.INT64, "x")
    np.testing.assert_array_equal(out, [1, 0])
