"""Fuzzing the binary tensor decoder (``core.tensors.raw``) and REST's binary tensor data
extension (``v2_codec``): encode -> decode gives back every datatype (FP16, BOOL and BYTES
included, zero-size shapes too), and whatever bytes arrive raise nothing but serval's own
errors. ``fuzz/binary_decoder.py`` runs the same decoder under atheris for longer."""

from __future__ import annotations

import contextlib
import json
import struct
import tracemalloc

import numpy as np
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from serval.core.errors import InvalidInputError, ServalError
from serval.core.tensors.datatypes import DataType
from serval.core.tensors.raw import decode_raw, encode_raw
from serval.core.types import InferenceResponse, Tensor
from serval.protocols.rest.v2_codec import (
    BinaryOutputs,
    decode_infer_request,
    encode_infer_response,
)
from tests.protocols.fuzz_strategies import (
    ANY_SHAPE,
    DATATYPE_NAMES,
    JSON_SCALARS,
    assert_same,
    fuzz,
    tensors,
)

ALL = list(DataType)


@fuzz(100)
@given(tensors(ALL))
def test_raw_round_trip(case: tuple[DataType, np.ndarray]) -> None:
    datatype, array = case
    assert_same(
        decode_raw(encode_raw(array, datatype), datatype, array.shape, "x"), array, datatype
    )


@fuzz(100)
@given(st.lists(tensors(ALL), min_size=1, max_size=3))
def test_binary_request_round_trip(cases: list[tuple[DataType, np.ndarray]]) -> None:
    raws = [encode_raw(array, datatype) for datatype, array in cases]
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": f"x{index}",
                    "datatype": datatype.value,
                    "shape": list(array.shape),
                    "parameters": {"binary_data_size": len(raw)},
                }
                for index, ((datatype, array), raw) in enumerate(zip(cases, raws, strict=True))
            ]
        }
    )
    request, _ = decode_infer_request(header + b"".join(raws), str(len(header)), "m", None)
    for tensor, (datatype, array) in zip(request.inputs, cases, strict=True):
        assert tensor.datatype is datatype
        assert_same(tensor.data, array, datatype)


@fuzz(100)
@given(st.lists(tensors(ALL), min_size=1, max_size=3))
def test_binary_response_round_trip(cases: list[tuple[DataType, np.ndarray]]) -> None:
    outputs = [Tensor(f"y{i}", datatype, array) for i, (datatype, array) in enumerate(cases)]
    encoded = encode_infer_response(InferenceResponse("m", outputs), BinaryOutputs(default=True))
    assert encoded.json_length is not None
    doc = orjson.loads(encoded.body[: encoded.json_length])
    offset = encoded.json_length
    for output, (datatype, array) in zip(doc["outputs"], cases, strict=True):
        size = output["parameters"]["binary_data_size"]
        chunk = encoded.body[offset : offset + size]
        offset += size
        assert_same(decode_raw(chunk, datatype, output["shape"], "y"), array, datatype)
    assert offset == len(encoded.body)


@fuzz(300)
@given(st.binary(max_size=96), st.sampled_from(ALL), ANY_SHAPE)
def test_decode_raw_raises_only_serval_errors(
    data: bytes, datatype: DataType, shape: list[int]
) -> None:
    with contextlib.suppress(ServalError):
        decode_raw(data, datatype, shape, "x")


@fuzz(300)
@given(st.binary(max_size=160), st.none() | st.text(max_size=4) | st.integers(0, 200).map(str))
def test_arbitrary_bodies_raise_only_serval_errors(body: bytes, header_length: str | None) -> None:
    with contextlib.suppress(ServalError):
        decode_infer_request(body, header_length, "m", None)


BINARY_INPUTS = st.fixed_dictionaries(
    {
        "name": st.text(min_size=1, max_size=3),
        "datatype": DATATYPE_NAMES,
        "shape": ANY_SHAPE,
        "parameters": st.fixed_dictionaries(
            {"binary_data_size": st.integers(min_value=-1, max_value=40) | JSON_SCALARS}
        ),
    }
)


@st.composite
def almost_right_bodies(draw: st.DrawFn) -> tuple[bytes, str]:
    """A JSON header announcing binary inputs, then bytes that may or may not match it."""
    inputs = draw(st.lists(BINARY_INPUTS, min_size=1, max_size=3))
    header = json.dumps({"inputs": inputs}).encode()  # integers of any size, as a client may
    tail = draw(st.binary(max_size=64))
    if draw(st.booleans()):  # BYTES elements with plausible lengths
        tail = b"".join(
            struct.pack("<I", len(item)) + item
            for item in draw(st.lists(st.binary(max_size=6), max_size=4))
        )
    length = len(header) + draw(st.integers(min_value=-2, max_value=2))
    return header + tail, str(length)


@fuzz(200)
@given(almost_right_bodies())
def test_almost_right_binary_requests_raise_only_serval_errors(case: tuple[bytes, str]) -> None:
    body, header_length = case
    with contextlib.suppress(ServalError):
        decode_infer_request(body, header_length, "m", None)


def test_a_bytes_shape_allocates_nothing_before_its_data_is_read() -> None:
    """Found by the fuzz tests: BYTES slots were allocated from the shape first, so a shape of
    [2**31] with 4 bytes of data took 16 GiB (a MemoryError, or the event loop held for
    seconds) before the decoder saw that the data ends. Shapes stay within the largest
    dimension a request may have (2**31 - 1), so the decoder, not the shape check, answers."""
    tracemalloc.start()
    try:
        with pytest.raises(InvalidInputError, match="ends after 1 of 2147483647"):
            decode_raw(struct.pack("<I", 0), DataType.BYTES, [2**31 - 1], "x")
        header = json.dumps(
            {
                "inputs": [
                    {
                        "name": "x",
                        "datatype": "BYTES",
                        "shape": [2**31 - 1],
                        "parameters": {"binary_data_size": 4},
                    }
                ]
            }
        ).encode()
        with pytest.raises(InvalidInputError, match="ends after 1"):
            decode_infer_request(header + bytes(4), str(len(header)), "m", None)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2**20
