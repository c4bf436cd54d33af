"""Open Inference Protocol REST against the real server, with tritonclient.http."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from serval.core.tensors.datatypes import DataType
from serval.testing import RunningServer, run_server
from tests.onnx_models import add_sub, identity, linear, write_model

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    repo = tmp_path_factory.mktemp("repo")
    write_model(repo, "simple", 1, add_sub())
    write_model(repo, "linear", 1, linear([1.0, 2.0], 0.0))
    write_model(repo, "linear", 2, linear([10.0, 20.0], 1.0))
    (repo / "linear" / "model.yaml").write_text("version_policy: all\n")
    write_model(repo, "strings", 1, identity(DataType.BYTES))
    write_model(repo, "halves", 1, identity(DataType.FP16))
    write_model(repo, "flags", 1, identity(DataType.BOOL))
    with run_server(repo, grpc=False) as running:
        yield running


@pytest.fixture
def client(server: RunningServer) -> Iterator[httpclient.InferenceServerClient]:
    with httpclient.InferenceServerClient(server.http_address) as triton:
        yield triton


def test_health(client: httpclient.InferenceServerClient) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("simple")
    assert client.is_model_ready("linear", "1")
    assert not client.is_model_ready("linear", "7")


def test_server_metadata(client: httpclient.InferenceServerClient) -> None:
    meta = client.get_server_metadata()
    assert meta["name"] == "serval"
    assert "binary_tensor_data" in meta["extensions"]
    assert "model_repository" in meta["extensions"]


def test_model_metadata(client: httpclient.InferenceServerClient) -> None:
    meta = client.get_model_metadata("simple")
    assert meta["name"] == "simple"
    assert meta["versions"] == ["1"]
    assert meta["platform"] == "onnxruntime_onnx"
    assert meta["inputs"] == [
        {"name": "INPUT0", "datatype": "INT32", "shape": [-1, 16]},
        {"name": "INPUT1", "datatype": "INT32", "shape": [-1, 16]},
    ]
    assert [o["name"] for o in meta["outputs"]] == ["OUTPUT0", "OUTPUT1"]
    assert client.get_model_metadata("linear", "1")["versions"] == ["1", "2"]


def _simple_inputs(binary: bool) -> tuple[list[httpclient.InferInput], np.ndarray, np.ndarray]:
    a = np.arange(32, dtype=np.int32).reshape(2, 16)
    b = np.full((2, 16), 3, dtype=np.int32)
    inputs = [
        httpclient.InferInput("INPUT0", [2, 16], "INT32"),
        httpclient.InferInput("INPUT1", [2, 16], "INT32"),
    ]
    inputs[0].set_data_from_numpy(a, binary_data=binary)
    inputs[1].set_data_from_numpy(b, binary_data=binary)
    return inputs, a, b


@pytest.mark.parametrize("binary", [True, False])
def test_infer(client: httpclient.InferenceServerClient, binary: bool) -> None:
    inputs, a, b = _simple_inputs(binary)
    outputs = [
        httpclient.InferRequestedOutput("OUTPUT0", binary_data=binary),
        httpclient.InferRequestedOutput("OUTPUT1", binary_data=not binary),
    ]
    result = client.infer("simple", inputs, outputs=outputs, request_id="req-7")
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + b)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), a - b)
    response = result.get_response()
    assert response["id"] == "req-7"
    assert response["model_version"] == "1"


def test_infer_without_outputs_returns_all_binary(client: httpclient.InferenceServerClient) -> None:
    inputs, a, b = _simple_inputs(True)
    result = client.infer("simple", inputs)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), a - b)


def test_output_selection(client: httpclient.InferenceServerClient) -> None:
    inputs, _, _ = _simple_inputs(True)
    result = client.infer("simple", inputs, outputs=[httpclient.InferRequestedOutput("OUTPUT1")])
    assert [o["name"] for o in result.get_response()["outputs"]] == ["OUTPUT1"]
    assert result.as_numpy("OUTPUT0") is None


def test_explicit_versions(client: httpclient.InferenceServerClient) -> None:
    x = httpclient.InferInput("x", [1, 2], "FP32")
    x.set_data_from_numpy(np.array([[1.0, 1.0]], np.float32))
    assert client.infer("linear", [x], model_version="1").as_numpy("y")[0, 0] == 3.0
    assert client.infer("linear", [x], model_version="2").as_numpy("y")[0, 0] == 31.0
    latest = client.infer("linear", [x])
    assert latest.get_response()["model_version"] == "2"
    with pytest.raises(InferenceServerException, match="has no version 9"):
        client.infer("linear", [x], model_version="9")


@pytest.mark.parametrize(
    ("model", "datatype", "array"),
    [
        ("strings", "BYTES", np.array([[b"hello", b"\xc3\xa9t\xc3\xa9"]], dtype=np.object_)),
        ("halves", "FP16", np.array([[1.5, -2.25, 65504.0]], dtype=np.float16)),
        ("flags", "BOOL", np.array([[True, False, True]])),
    ],
)
def test_datatypes_binary(
    client: httpclient.InferenceServerClient, model: str, datatype: str, array: np.ndarray
) -> None:
    tensor = httpclient.InferInput("INPUT0", list(array.shape), datatype)
    tensor.set_data_from_numpy(array, binary_data=True)
    result = client.infer(model, [tensor])
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), array)


def test_a_large_binary_tensor_round_trips(client: httpclient.InferenceServerClient) -> None:
    """8 MiB each way: the request in many reads, the response past the write-coalescing
    threshold (protocols.rest.coalescing)."""
    array = np.arange(1 << 22, dtype=np.float16).reshape(1, -1)
    tensor = httpclient.InferInput("INPUT0", list(array.shape), "FP16")
    tensor.set_data_from_numpy(array, binary_data=True)
    result = client.infer("halves", [tensor])
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), array)


def test_bytes_json(client: httpclient.InferenceServerClient) -> None:
    array = np.array([[b"a", b"bc"]], dtype=np.object_)
    tensor = httpclient.InferInput("INPUT0", [1, 2], "BYTES")
    tensor.set_data_from_numpy(array, binary_data=False)
    result = client.infer(
        "strings", [tensor], outputs=[httpclient.InferRequestedOutput("OUTPUT0", binary_data=False)]
    )
    assert result.get_response()["outputs"][0]["data"] == ["a", "bc"]


def test_model_config(client: httpclient.InferenceServerClient) -> None:
    config = client.get_model_config("simple")
    assert config["name"] == "simple"
    assert config["max_batch_size"] == 0
    assert config["input"][0] == {"name": "INPUT0", "data_type": "TYPE_INT32", "dims": [-1, 16]}
    assert config["backend"] == "onnxruntime"
    assert config["version_policy"] == {"latest": {"num_versions": 1}}
    # No queue of its own: the model shares the server's inference threads.
    assert "dynamic_batching" not in config
    assert "instance_group" not in config


def test_statistics_count_requests(client: httpclient.InferenceServerClient) -> None:
    before = client.get_inference_statistics("simple")["model_stats"][0]
    inputs, _, _ = _simple_inputs(True)
    for _ in range(3):
        client.infer("simple", inputs)
    bad = httpclient.InferInput("INPUT0", [1, 16], "INT32")
    bad.set_data_from_numpy(np.zeros((1, 16), np.int32))
    with pytest.raises(InferenceServerException):
        client.infer("simple", [bad])  # INPUT1 missing
    after = client.get_inference_statistics("simple")["model_stats"][0]
    stats, old = after["inference_stats"], before["inference_stats"]
    assert stats["success"]["count"] - old["success"]["count"] == 3
    assert stats["fail"]["count"] - old["fail"]["count"] == 1
    assert stats["compute_infer"]["ns"] > old["compute_infer"]["ns"]
    assert after["inference_count"] - before["inference_count"] == 6
    assert after["last_inference"] > 0
    every = client.get_inference_statistics()["model_stats"]
    assert {(s["name"], s["version"]) for s in every} >= {("simple", "1"), ("linear", "2")}
    one = client.get_inference_statistics("linear", "1")["model_stats"]
    assert [(s["name"], s["version"]) for s in one] == [("linear", "1")]


def test_repository_index_unload_load(client: httpclient.InferenceServerClient) -> None:
    index = client.get_model_repository_index()
    assert {"name": "simple", "version": "1", "state": "READY", "reason": ""} in index
    client.unload_model("flags")
    assert not client.is_model_ready("flags")
    states = {(r["name"], r.get("version")): r for r in client.get_model_repository_index()}
    assert states[("flags", "1")]["state"] == "UNAVAILABLE"
    assert states[("flags", "1")]["reason"] == "unloaded"
    client.load_model("flags")
    assert client.is_model_ready("flags")
    with pytest.raises(InferenceServerException, match="not in the model repository"):
        client.load_model("no_such_model")


def test_pipelined_requests_each_get_their_whole_response(server: RunningServer) -> None:
    """Responses leave in one write each (protocols.rest.coalescing); two requests sent back
    to back on one connection still get two complete responses, in order."""
    body = (
        b'{"inputs":[{"name":"x","datatype":"FP32","shape":[1,2],"data":[1,1]}],'
        b'"outputs":[{"name":"y"}]}'
    )
    infer = (
        b"POST /v2/models/linear/versions/%d/infer HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
    )
    head = b"HEAD /v2/health/ready HTTP/1.1\r\nHost: x\r\n\r\n"
    close = b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    with socket.create_connection(("127.0.0.1", server.http_port), timeout=10) as sock:
        sock.sendall(infer % (1, len(body), body) + head + infer % (2, len(body), body) + close)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    assert received.count(b"HTTP/1.1 ") == received.count(b"HTTP/1.1 200 OK") == 4
    assert received.index(b'"model_version":"1"') < received.index(b'"model_version":"2"')
    assert b'"data":[3.0]' in received and b'"data":[31.0]' in received
    assert received.endswith(b'{"live":true}')
