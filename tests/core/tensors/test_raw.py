"""Property tests: the raw tensor encoding round-trips every datatype."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from serval.core.errors import InvalidInputError
from serval.core.tensors.datatypes import DataType
from serval.core.tensors.raw import decode_raw, encode_raw

FIXED = [d for d in DataType if d is not DataType.BYTES]
shapes = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5)


@given(
    st.sampled_from(FIXED).flatmap(
        lambda d: st.tuples(st.just(d), hnp.arrays(d.numpy_dtype, shapes))
    )
)
def test_fixed_size_round_trip(case: tuple[DataType, np.ndarray]) -> None:
    datatype, array = case
    raw = encode_raw(array, datatype)
    assert len(raw) == array.size * datatype.itemsize
    decoded = decode_raw(raw, datatype, array.shape, "x")
    assert decoded.shape == array.shape
    np.testing.assert_array_equal(decoded, array)


@given(st.lists(st.binary(max_size=20), max_size=12))
def test_bytes_round_trip(items: list[bytes]) -> None:
    array = np.array([*items, b""], dtype=np.object_)[: len(items)]
    raw = encode_raw(array, DataType.BYTES)
    decoded = decode_raw(raw, DataType.BYTES, [len(items)], "x")
    assert list(decoded) == items


def test_wrong_size_names_input() -> None:
    with pytest.raises(InvalidInputError, match=r"input 'x': FP32 shape \[2\] needs 8 bytes"):
        decode_raw(b"\0" * 7, DataType.FP32, [2], "x")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"\x05\0\0\0ab", "declares 5 bytes"),
        (b"\x01\0\0\0a", "ends after 1 of 2"),
        (b"\x01\0\0\0a\x01\0\0\0bEXTRA", "left over"),
    ],
)
def test_truncated_bytes(raw: bytes, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        decode_raw(raw, DataType.BYTES, [2], "x")
