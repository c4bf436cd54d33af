"""Every inference response carries a request id: the client's, else one the server assigns,
the same in the V2 ``id`` and the ``x-request-id`` header (or gRPC metadata)."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import httpx
import numpy as np
import orjson
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from serval.protocols.grpc.generated import grpc_service_pb2 as pb
from serval.protocols.grpc.generated import grpc_service_pb2_grpc as pb_grpc
from serval.testing import RunningServer, run_server
from tests.onnx_models import linear, write_model

ROW = [[1.0, 2.0]]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    repo = tmp_path_factory.mktemp("repo")
    write_model(repo, "linear", 1, linear([1.0, 2.0], 0.0))
    with run_server(repo) as running:
        yield running


@pytest.fixture(scope="module")
def http(server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.http_url, timeout=10) as client:
        yield client


def _json_body(**fields: object) -> dict[str, object]:
    x = {"name": "x", "datatype": "FP32", "shape": [1, 2], "data": ROW}
    return {"inputs": [x], **fields}


def test_rest_json_assigns_an_id_and_echoes_the_clients(http: httpx.Client) -> None:
    assigned = http.post("/v2/models/linear/infer", json=_json_body())
    assert assigned.status_code == 200
    request_id = assigned.json()["id"]
    assert request_id and assigned.headers["x-request-id"] == request_id
    again = http.post("/v2/models/linear/infer", json=_json_body()).json()["id"]
    assert again != request_id  # one per request

    echoed = http.post("/v2/models/linear/infer", json=_json_body(id="client-7"))
    assert echoed.json()["id"] == "client-7"
    assert echoed.headers["x-request-id"] == "client-7"

    from_header = http.post(
        "/v2/models/linear/versions/1/infer", json=_json_body(), headers={"x-request-id": "h-1"}
    )
    assert from_header.json()["id"] == "h-1" and from_header.headers["x-request-id"] == "h-1"


def test_rest_binary_response_carries_the_id_of_its_header(http: httpx.Client) -> None:
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "x",
                    "datatype": "FP32",
                    "shape": [1, 2],
                    "parameters": {"binary_data_size": 8},
                }
            ],
            "parameters": {"binary_data_output": True},
        }
    )
    reply = http.post(
        "/v2/models/linear/infer",
        content=header + np.array(ROW, np.float32).tobytes(),
        headers={
            "inference-header-content-length": str(len(header)),
            "content-type": "application/octet-stream",
        },
    )
    assert reply.status_code == 200
    length = int(reply.headers["inference-header-content-length"])
    doc = orjson.loads(reply.content[:length])
    assert doc["outputs"][0]["parameters"]["binary_data_size"] == 4
    assert doc["id"] and doc["id"] == reply.headers["x-request-id"]


def test_tritonclient_http_binary_gets_an_id(server: RunningServer) -> None:
    x = httpclient.InferInput("x", [1, 2], "FP32")
    x.set_data_from_numpy(np.array(ROW, np.float32), binary_data=True)
    with httpclient.InferenceServerClient(server.http_address) as client:
        assigned = client.infer("linear", [x]).get_response()
        echoed = client.infer("linear", [x], request_id="mine").get_response()
    assert assigned["id"] and assigned["id"] != "mine"
    assert echoed["id"] == "mine"


def test_v1_predict_answers_with_a_request_id(http: httpx.Client) -> None:
    assigned = http.post("/v1/models/linear:predict", json={"instances": ROW})
    assert assigned.status_code == 200 and assigned.headers["x-request-id"]
    given = http.post(
        "/v1/models/linear:predict", json={"instances": ROW}, headers={"x-request-id": "v1-id"}
    )
    assert given.headers["x-request-id"] == "v1-id"


def test_grpc_assigns_an_id_and_sends_it_in_metadata(server: RunningServer) -> None:
    x = grpcclient.InferInput("x", [1, 2], "FP32")
    x.set_data_from_numpy(np.array(ROW, np.float32))
    with grpcclient.InferenceServerClient(server.grpc_address) as client:
        assigned = client.infer("linear", [x]).get_response()
        echoed = client.infer("linear", [x], request_id="g-1").get_response()
    assert assigned.id and assigned.id != "g-1"
    assert echoed.id == "g-1"

    request = pb.ModelInferRequest(model_name="linear")
    tensor = request.inputs.add(name="x", datatype="FP32", shape=[1, 2])
    tensor.contents.fp32_contents.extend([1.0, 2.0])
    with grpc.insecure_channel(server.grpc_address) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        response, call = stub.ModelInfer.with_call(request, timeout=10)
    metadata = dict(call.initial_metadata())
    assert response.id and metadata["x-request-id"] == response.id
