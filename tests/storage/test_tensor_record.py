"""The compact tensor record (cache values, precomputed bodies): every datatype, shape and
value round trips (hypothesis), numbers decode zero-copy, and garbage is a ValueError."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from serval.core.tensors.datatypes import DataType
from serval.core.types import Tensor
from serval.storage.tensor_record import decode_tensors, encode_tensors

NUMERIC = [d for d in DataType if d is not DataType.BYTES]
SHAPES = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4)


@st.composite
def tensors(draw: st.DrawFn) -> Tensor:
    name = draw(st.text(min_size=0, max_size=12))
    datatype = draw(st.sampled_from(list(DataType)))
    shape = draw(SHAPES)
    data: np.ndarray[Any, Any]
    if datatype is DataType.BYTES:
        count = int(np.prod(shape))
        items = draw(st.lists(st.binary(max_size=20), min_size=count, max_size=count))
        data = np.empty(count, dtype=np.object_)
        data[:] = items
        data = data.reshape(shape)
    else:
        data = draw(hnp.arrays(datatype.numpy_dtype, shape))
    return Tensor(name, datatype, data)


@settings(max_examples=200, deadline=None)
@given(st.lists(tensors(), min_size=0, max_size=5))
def test_tensors_round_trip(given_tensors: list[Tensor]) -> None:
    decoded = decode_tensors(encode_tensors(given_tensors))
    assert len(decoded) == len(given_tensors)
    for want, got in zip(given_tensors, decoded, strict=True):
        assert (got.name, got.datatype, got.shape) == (want.name, want.datatype, want.shape)
        assert got.data.dtype == want.data.dtype
        if want.datatype is DataType.BYTES:
            assert got.data.tolist() == want.data.tolist()
        else:  # bit for bit (NaN payloads, -0.0 included)
            assert got.data.tobytes() == want.data.tobytes()


def test_numbers_decode_as_read_only_views_of_the_record() -> None:
    data = np.arange(6, dtype=np.float32).reshape(2, 3)
    record = encode_tensors([Tensor("y", DataType.FP32, data[:, 1])])  # a strided view
    (y,) = decode_tensors(record)
    np.testing.assert_array_equal(y.data, [1.0, 4.0])
    assert not y.data.flags.writeable
    assert y.data.base is not None  # no copy
    assert len(record) == 4 + 2 + 2 + 1 + 1 + 4 + 1 + 4 + 8  # magic, count, y, FP32, [2], values


def test_text_and_a_scalar_and_an_empty_tensor() -> None:
    text = np.array(["dog", b"cat"], dtype=np.object_)  # str values are written as UTF-8
    record = encode_tensors(
        [
            Tensor("label", DataType.BYTES, text),
            Tensor("score", DataType.FP64, np.array(2.5)),
            Tensor("none", DataType.INT32, np.zeros((0, 3), np.int32)),
        ]
    )
    label, score, none = decode_tensors(record)
    assert label.data.tolist() == [b"dog", b"cat"]
    assert score.shape == () and score.data.item() == 2.5
    assert none.shape == (0, 3) and none.data.dtype == np.int32


@pytest.mark.parametrize(
    "garbage",
    [
        b"",
        b"\x80\x04pickle",
        b"SVT1",
        b"SVT1\x01\x00",
        b"SVT1\x01\x00\x01\x00y\x04FP99\x00",  # unknown datatype
        b"SVT1\x01\x00\x01\x00y\x04FP32\x01\x05\x00\x00\x00" + b"\x00" * 8,  # 5 values, 2 there
        b"SVT1\x01\x00\x01\x00y\x05BYTES\x01\xff\xff\xff\x7f",  # 2**31 values of nothing
        b"SVT1\x01\x00\x01\x00y\x05BYTES\x01\x01\x00\x00\x00\xff\x00\x00\x00ab",  # runs past
        encode_tensors([Tensor("y", DataType.INT8, np.array([1], np.int8))]) + b"x",
    ],
)
def test_garbage_is_a_value_error(garbage: bytes) -> None:
    with pytest.raises(ValueError):
        decode_tensors(garbage)
