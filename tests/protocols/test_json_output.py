"""Outputs as JSON: every numpy integer flavour a runtime may return, and a 500 logged once."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, cast

import httpx
import numpy as np
import orjson
import pytest

from serval.core.control import ControlPlane
from serval.core.dataplane import DataPlane
from serval.core.tensors.datatypes import DataType
from serval.core.types import InferenceResponse, Tensor
from serval.protocols.rest.app import build_rest_app
from serval.protocols.rest.json_tensors import array_to_json, dumps_json, json_ready
from serval.protocols.rest.v1 import _rows
from serval.protocols.rest.v2_codec import encode_infer_response

# numpy types that equal a canonical dtype but are distinct scalar types (on some platforms):
# onnxruntime returns INT64 as longlong.
FLAVOURS = [
    (np.longlong, DataType.INT64, [3, -2]),
    (np.ulonglong, DataType.UINT64, [3, 2**64 - 1]),
    (np.intc, DataType.INT32, [3, -2]),
    (np.uintc, DataType.UINT32, [3, 2**32 - 1]),
    (np.int_, DataType.INT64, [3, -2]),
    (np.uint, DataType.UINT64, [3, 7]),
    (np.short, DataType.INT16, [3, -2]),
    (np.ubyte, DataType.UINT8, [3, 255]),
]


@pytest.mark.parametrize(("numpy_type", "datatype", "values"), FLAVOURS)
def test_each_element_of_an_output_is_json(
    numpy_type: type[np.generic], datatype: DataType, values: list[int]
) -> None:
    data = np.array(values, dtype=numpy_type)
    encoded = array_to_json(data, datatype)
    # V1 rows index the array: each element must be a scalar type orjson writes.
    assert orjson.loads(dumps_json([encoded[0], encoded[1]])) == values
    assert orjson.loads(dumps_json(encoded)) == values
    assert orjson.loads(dumps_json(numpy_type(values[1]))) == values[1]


def test_json_ready_is_a_view_not_a_copy() -> None:
    data = np.array([1, 2], dtype=np.longlong)
    ready = json_ready(data)
    assert ready.dtype.type is np.int64
    assert np.shares_memory(ready, data)
    canonical = np.array([1.5], dtype=np.float32)
    assert json_ready(canonical) is canonical


def test_types_outside_the_protocol_are_written_too() -> None:
    assert orjson.loads(dumps_json(np.array([1.5], dtype=np.longdouble))) == [1.5]
    assert orjson.loads(dumps_json(np.longdouble(2.5))) == 2.5
    with pytest.raises(TypeError, match="not JSON serializable"):
        dumps_json(object())


def _classifier_response() -> InferenceResponse:
    return InferenceResponse(
        "classifier",
        [
            Tensor("probabilities", DataType.FP32, np.array([[0.25, 0.75], [1, 0]], np.float32)),
            Tensor("label", DataType.INT64, np.array([1, 0], dtype=np.longlong)),
        ],
    )


def test_v1_rows_of_a_longlong_label() -> None:
    rows = orjson.loads(dumps_json(_rows(_classifier_response())))
    assert rows == [
        {"probabilities": [0.25, 0.75], "label": 1},
        {"probabilities": [1.0, 0.0], "label": 0},
    ]


def test_v2_json_of_a_longlong_label() -> None:
    body = encode_infer_response(_classifier_response()).body
    outputs = {o["name"]: o["data"] for o in orjson.loads(body)["outputs"]}
    assert outputs["label"] == [1, 0]


class _FailingDataPlane:
    """V1 predict leases the version first (one handle for decoding and inference)."""

    wants_headers = False
    sticky_headers: dict[str, str] = {}

    def finish(self, *args: Any, **kwargs: Any) -> None:
        pass

    def lease(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("boom")


def test_an_unexpected_error_is_one_500_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    app = build_rest_app(
        cast(DataPlane, _FailingDataPlane()),
        cast(ControlPlane, object()),
        max_request_bytes=1 << 20,
    )

    async def post() -> httpx.Response:
        # Before the fix, Starlette re-raised after answering (and uvicorn logged it again).
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.post("/v1/models/m:predict", json={"instances": [1]})

    with caplog.at_level(logging.ERROR):
        response = asyncio.run(post())
    assert response.status_code == 500
    assert response.json() == {"error": "internal error: RuntimeError: boom"}
    tracebacks = [r for r in caplog.records if r.exc_info is not None]
    assert len(tracebacks) == 1, [r.getMessage() for r in caplog.records]
