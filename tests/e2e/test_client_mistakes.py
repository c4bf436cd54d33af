"""Client mistakes found answering 500 (issue 11, item 6): each is now a JSON 400 (REST and
gRPC), and the keep-alive connection keeps serving."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc

from serval.testing import RunningServer, run_server
from tests.onnx_models import linear, write_model

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("repo")
    write_model(root, "linear", 1, linear([1.0, 2.0], 0.0))
    return root


@pytest.fixture(scope="module")
def server(repo: Path) -> Iterator[RunningServer]:
    with run_server(repo) as running:
        yield running


def tensor(**fields: object) -> dict[str, object]:
    return {"name": "x", "datatype": "FP32", "shape": [1, 2], "data": [1.0, 2.0], **fields}


BAD_BODIES = {
    "70 dimensions": ({"inputs": [tensor(shape=[1] * 70, data=[1.0])]}, "70 dimensions"),
    "dimension 2^63": ({"inputs": [tensor(shape=[2**63, 0], data=[])]}, "9223372036854775808"),
    "dimension 2^63-1": (
        {"inputs": [tensor(shape=[2**63 - 1, 0], data=[])]},
        "9223372036854775807",
    ),
    "dimension 2^63-1 flat": ({"inputs": [tensor(shape=[2**63 - 1, 1])]}, "9223372036854775807"),
    "FP32 out of range": ({"inputs": [tensor(data=[1e308, 1.0])]}, "input 'x'"),
    "an output twice": (
        {"inputs": [tensor()], "outputs": [{"name": "y"}, {"name": "y"}]},
        "more than once",
    ),
}


@pytest.mark.parametrize("case", list(BAD_BODIES))
def test_mistakes_are_json_400s_on_a_live_connection(server: RunningServer, case: str) -> None:
    body, fragment = BAD_BODIES[case]
    with httpx.Client(base_url=server.http_url, timeout=10) as http:
        answer = http.post("/v2/models/linear/infer", json=body)
        assert answer.status_code == 400, answer.text
        assert answer.headers["content-type"] == "application/json"
        assert fragment in answer.json()["error"]
        # The same keep-alive connection serves the next request.
        assert http.post("/v2/models/linear/infer", json={"inputs": [tensor()]}).status_code == 200


def test_empty_outputs_means_every_output(server: RunningServer) -> None:
    with httpx.Client(base_url=server.http_url, timeout=10) as http:
        before = _failures(http)
        answer = http.post("/v2/models/linear/infer", json={"inputs": [tensor()], "outputs": []})
        assert answer.status_code == 200, answer.text
        assert [o["name"] for o in answer.json()["outputs"]] == ["y"]
        assert _failures(http) == before


def test_a_long_model_name_reveals_nothing(server: RunningServer, repo: Path) -> None:
    name = "m" * 5000
    with httpx.Client(base_url=server.http_url, timeout=10) as http:
        answer = http.post(f"/v2/repository/models/{name}/load")
        assert answer.status_code == 404, answer.text
        assert answer.headers["content-type"] == "application/json"
        assert str(repo) not in answer.text
        assert http.get("/v2/health/live").status_code == 200
    with grpc.insecure_channel(server.grpc_address) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        with pytest.raises(grpc.RpcError) as raised:
            stub.RepositoryModelLoad(pb.RepositoryModelLoadRequest(model_name=name))
        assert raised.value.code() is grpc.StatusCode.NOT_FOUND
        assert str(repo) not in (raised.value.details() or "")


@pytest.mark.parametrize(
    "shape", [[1] * 70, [2**63 - 1, 0], [2**62, 0]], ids=["70 dims", "2^63-1", "2^62"]
)
def test_grpc_shapes_are_invalid_arguments(server: RunningServer, shape: list[int]) -> None:
    with grpc.insecure_channel(server.grpc_address) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        request = pb.ModelInferRequest(model_name="linear")
        request.inputs.add(name="x", datatype="FP32", shape=shape)
        request.raw_input_contents.append(b"")
        with pytest.raises(grpc.RpcError) as raised:
            stub.ModelInfer(request)
        assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert "input 'x'" in (raised.value.details() or "")
        # An empty output list over gRPC is every output, too.
        fine = pb.ModelInferRequest(model_name="linear")
        fine.inputs.add(name="x", datatype="FP32", shape=[1, 2]).contents.fp32_contents.extend(
            [1.0, 2.0]
        )
        assert [o.name for o in stub.ModelInfer(fine).outputs] == ["y"]


def _failures(http: httpx.Client) -> int:
    stats = http.get("/v2/models/linear/stats").json()["model_stats"][0]
    return int(stats["inference_stats"]["fail"]["count"])
