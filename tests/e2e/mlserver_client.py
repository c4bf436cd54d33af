"""MLServer's own codecs against a serval server: run by tests/e2e/test_mlserver_codecs.py with
an interpreter that has ``mlserver`` (it cannot share serval's environment: it pins
starlette < 0.47 through fastapi). Each request is built by MLServer's codecs, sent over
REST (its types' JSON, as ``model_dump()`` gives it) and gRPC (its own generated stubs and
converters), and the answers decoded by its codecs. Prints one JSON object of results.

    python mlserver_client.py HTTP_URL GRPC_ADDRESS
"""

from __future__ import annotations

import json
import sys
from typing import Any

import grpc
import httpx
import numpy as np
import pandas as pd
from mlserver.codecs import NumpyRequestCodec, PandasCodec, StringRequestCodec
from mlserver.grpc import converters
from mlserver.grpc import dataplane_pb2_grpc as stubs
from mlserver.types import InferenceRequest, InferenceResponse, RequestOutput

# Rows for the classifier (features a, b, c, d); the columns arrive out of order.
FRAME = pd.DataFrame(
    {
        "d": [0.5, -1.0],
        "b": [1.5, -0.5],
        "a": [2.0, -2.0],
        "c": [0.0, 1.0],
    }
)
# Columns of the linear model (model.yaml inputs[].columns: w, x, y, z): integers and floats,
# converted to its FP32.
LINEAR_FRAME = pd.DataFrame({"z": [2, 0], "y": [1.0, 0.0], "x": [0, 1], "w": [1.0, 1.0]})
ROWS = np.array([[1.0, 0.0, 1.0, 2.0], [1.0, 1.0, 0.0, 0.0]])


def rest(url: str, model: str, request: InferenceRequest) -> tuple[int, Any]:
    # As MLServer's documentation sends it: the model's dict as JSON (unset fields as null).
    reply = httpx.post(f"{url}/v2/models/{model}/infer", json=request.model_dump(), timeout=30)
    return reply.status_code, reply.json()


def grpc_infer(address: str, model: str, request: InferenceRequest) -> InferenceResponse:
    with grpc.insecure_channel(address) as channel:
        message = converters.ModelInferRequestConverter.from_types(request, model_name=model)
        reply = stubs.GRPCInferenceServiceStub(channel).ModelInfer(message, timeout=30)
        return converters.ModelInferResponseConverter.to_types(reply)


def pandas_request(frame: pd.DataFrame, outputs: list[str] | None = None) -> InferenceRequest:
    request = PandasCodec.encode_request(frame, use_bytes=False)
    if outputs:
        request.outputs = [RequestOutput(name=name) for name in outputs]
    return request


def main(url: str, address: str) -> dict[str, Any]:
    results: dict[str, Any] = {}

    # PandasCodec onto scikit-learn's feature_names_in_, REST and gRPC.
    status, body = rest(url, "classifier", pandas_request(FRAME, ["predict"]))
    results["pd_rest_status"] = status
    results["pd_rest_parameters"] = body.get("parameters")
    results["pd_rest_output_parameters"] = [o.get("parameters") for o in body["outputs"]]
    frame = PandasCodec.decode_response(InferenceResponse.model_validate(body))
    results["pd_rest_frame"] = frame.to_dict(orient="list")
    response = grpc_infer(address, "classifier", pandas_request(FRAME, ["predict"]))
    results["pd_grpc_content_type"] = response.parameters and response.parameters.content_type
    decoded = PandasCodec.decode_response(response)
    results["pd_grpc_frame"] = {
        name: [v.decode() if isinstance(v, bytes) else v for v in values]
        for name, values in decoded.to_dict(orient="list").items()
    }

    # PandasCodec onto model.yaml's inputs[].columns, INT64 and FP64 columns into FP32.
    status, body = rest(url, "linear", pandas_request(LINEAR_FRAME))
    results["pd_columns_status"] = status
    results["pd_columns_y"] = PandasCodec.decode_response(InferenceResponse.model_validate(body))[
        "y"
    ].tolist()

    # A missing column is a 400 naming it.
    status, body = rest(url, "linear", pandas_request(LINEAR_FRAME.drop(columns=["x"])))
    results["pd_missing"] = [status, body.get("error")]

    # NumpyRequestCodec: one input named input-1, [N, 4] FP64 to the model's FP32.
    numpy_request = NumpyRequestCodec.encode_request(ROWS)
    status, body = rest(url, "linear", numpy_request)
    results["np_rest_status"] = status
    results["np_rest_output_parameters"] = [o.get("parameters") for o in body["outputs"]]
    results["np_rest"] = NumpyRequestCodec.decode_response(
        InferenceResponse.model_validate(body)
    ).tolist()
    response = grpc_infer(address, "linear", NumpyRequestCodec.encode_request(ROWS))
    results["np_grpc"] = NumpyRequestCodec.decode_response(response).tolist()

    # StringRequestCodec: [N, 1] BYTES to a model taking [-1].
    status, body = rest(
        url, "shout", StringRequestCodec.encode_request(["hi", "yo"], use_bytes=False)
    )
    results["str_rest_status"] = status
    results["str_rest"] = StringRequestCodec.decode_response(InferenceResponse.model_validate(body))
    response = grpc_infer(address, "shout", StringRequestCodec.encode_request(["ab", "cd"]))
    results["str_grpc"] = StringRequestCodec.decode_response(response)
    return results


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2])))
