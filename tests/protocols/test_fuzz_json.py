"""Fuzzing the JSON tensor decoder (``json_tensors``) and the V2 request decoder's JSON path
(``v2_codec``): encode -> decode gives back every datatype JSON carries, and whatever a client
sends raises nothing but serval's own errors (a 400, never a 500)."""

from __future__ import annotations

import base64
import contextlib
import json
from typing import Any

import numpy as np
import orjson
from hypothesis import given
from hypothesis import strategies as st

from serval.core.errors import ServalError
from serval.core.tensors.datatypes import DataType
from serval.core.types import InferenceResponse, Tensor
from serval.protocols.rest.json_tensors import array_to_json, json_to_array
from serval.protocols.rest.v2_codec import decode_infer_request, encode_infer_response
from tests.protocols.fuzz_strategies import (
    ANY_SHAPE,
    DATATYPE_NAMES,
    JSON_SCALARS,
    JSON_VALUES,
    PARAMETERS,
    assert_same,
    fuzz,
    known_issue_11_item_6,
    tensors,
)

# FP16 is binary only: JSON refuses it on the way in and needs binary_data on the way out.
JSON_DATATYPES = [d for d in DataType if d is not DataType.FP16]


def _request_data(datatype: DataType, array: np.ndarray, nested: bool, b64: bool) -> Any:
    if datatype is DataType.BYTES:
        flat = [
            {"b64": base64.b64encode(item).decode()} if b64 else item.decode()
            for item in array.reshape(-1)
        ]
        return np.array(flat, dtype=object).reshape(array.shape).tolist() if nested else flat
    return array.tolist() if nested else array.reshape(-1).tolist()


@fuzz(150)
@given(tensors(JSON_DATATYPES), st.booleans(), st.booleans())
def test_json_request_round_trip(
    case: tuple[DataType, np.ndarray], nested: bool, b64: bool
) -> None:
    datatype, array = case
    if datatype is DataType.BYTES and not b64:
        array = np.vectorize(lambda b: b.decode("utf-8", "replace").encode(), otypes=[object])(
            array
        )
    doc = {
        "inputs": [
            {
                "name": "x",
                "datatype": datatype.value,
                "shape": list(array.shape),
                "data": _request_data(datatype, array, nested, b64),
            }
        ]
    }
    (tensor,) = decode_infer_request(orjson.dumps(doc), None, "m", None)[0].inputs
    assert_same(tensor.data, array, datatype)


@fuzz(100)
@given(tensors(JSON_DATATYPES, text=True))
def test_json_response_round_trip(case: tuple[DataType, np.ndarray]) -> None:
    datatype, array = case
    response = InferenceResponse("m", [Tensor("y", datatype, array)])
    (output,) = orjson.loads(encode_infer_response(response).body)["outputs"]
    assert output["shape"] == list(array.shape)
    decoded = json_to_array(output["data"], datatype, "y").reshape(output["shape"])
    assert_same(decoded, array, datatype)


@fuzz(100)
@given(tensors(JSON_DATATYPES))
def test_v1_json_round_trip(case: tuple[DataType, np.ndarray]) -> None:
    """TF Serving's V1 writes tensors with ``array_to_json`` (BYTES as ``{"b64": ...}``) and
    reads them with ``json_to_array``."""
    datatype, array = case
    text = orjson.dumps(array_to_json(array, datatype, b64=True), option=orjson.OPT_SERIALIZE_NUMPY)
    decoded = json_to_array(orjson.loads(text), datatype, "x")
    if array.size == 0:  # `[]` cannot say the dimensions after a zero: V1 carries no shape
        assert decoded.size == 0
        decoded = decoded.reshape(array.shape)
    assert_same(decoded, array, datatype)


@fuzz(200)
@given(JSON_VALUES, st.sampled_from(list(DataType)))
def test_json_to_array_raises_only_serval_errors(data: Any, datatype: DataType) -> None:
    with contextlib.suppress(ServalError):
        json_to_array(data, datatype, "x")


INPUTS = st.fixed_dictionaries(
    {"name": st.text(max_size=3) | JSON_SCALARS, "datatype": DATATYPE_NAMES, "shape": ANY_SHAPE},
    optional={"data": JSON_VALUES, "parameters": PARAMETERS},
)
OUTPUTS = JSON_VALUES | st.lists(
    st.fixed_dictionaries({"name": st.text(max_size=3)}, optional={"parameters": PARAMETERS}),
    max_size=2,
)
DOCUMENTS = st.fixed_dictionaries(
    {"inputs": st.lists(INPUTS, max_size=3) | JSON_VALUES},
    optional={"id": JSON_SCALARS, "parameters": PARAMETERS, "outputs": OUTPUTS},
)


def _known_issue(doc: dict[str, Any]) -> bool:
    inputs = doc["inputs"] if isinstance(doc["inputs"], list) else []
    return any(
        isinstance(item, dict) and "data" in item and known_issue_11_item_6(item.get("shape"))
        for item in inputs
    )


@fuzz(200)
@given(DOCUMENTS | JSON_VALUES)
def test_decode_request_raises_only_serval_errors(doc: Any) -> None:
    if isinstance(doc, dict) and "inputs" in doc and _known_issue(doc):
        return
    # The stdlib writes integers of any size, as a client may; orjson then refuses them (400).
    body = json.dumps(doc).encode()
    with contextlib.suppress(ServalError):
        decode_infer_request(body, None, "m", None)
