"""Triton's clients against the real server: tritonclient.grpc's streaming API
(``ModelStreamInfer``), the classification extension (``class_count``) over HTTP and gRPC,
``load_model(config=get_model_config(...))`` round trips, and the parameters serval refuses
(sequence batching, shared memory)."""

from __future__ import annotations

import json
import queue
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from onnx import TensorProto
from tritonclient.utils import InferenceServerException

from serval.testing import RunningServer, run_server
from tests.e2e.grpc_models import _save, build_repository, identity

pytestmark = pytest.mark.e2e

LABELS = ["cat", "dog", "bird"]
SCORES = np.array([[0.1, 0.7, 0.2], [0.5, 0.2, 0.3]], np.float32)
BATCHED_YAML = """\
max_batch_size: 8
instances: 2
dynamic_batching:
  max_queue_delay_us: 100
  preferred_batch_sizes: [4]
  max_queue_size: 16
  priority_levels: 2
parameters:
  flavour: mild
"""


def build(repository: Path) -> Path:
    build_repository(repository)
    _save(identity(TensorProto.FLOAT), repository, "scores")
    labels = ", ".join(LABELS)
    (repository / "scores" / "model.yaml").write_text(
        f"outputs:\n  - name: OUTPUT0\n    labels: [{labels}]\n"
    )
    for name in ("batched_http", "batched_grpc"):
        _save(identity(TensorProto.FLOAT), repository, name)
        (repository / name / "model.yaml").write_text(BATCHED_YAML)
    return repository


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with run_server(build(tmp_path_factory.mktemp("repository"))) as running:
        yield running


@pytest.fixture(scope="module")
def grpc_client(server: RunningServer) -> Iterator[grpcclient.InferenceServerClient]:
    with grpcclient.InferenceServerClient(server.grpc_address) as client:
        yield client


@pytest.fixture(scope="module")
def http_client(server: RunningServer) -> Iterator[httpclient.InferenceServerClient]:
    address = server.http_url.removeprefix("http://")
    with httpclient.InferenceServerClient(address) as client:
        yield client


def grpc_input(data: np.ndarray, name: str = "INPUT0") -> grpcclient.InferInput:
    tensor = grpcclient.InferInput(name, list(data.shape), "FP32")
    tensor.set_data_from_numpy(data)
    return tensor


def http_input(data: np.ndarray, name: str = "INPUT0") -> httpclient.InferInput:
    tensor = httpclient.InferInput(name, list(data.shape), "FP32")
    tensor.set_data_from_numpy(data)
    return tensor


# -- ModelStreamInfer ------------------------------------------------------------------------


def collect(answers: queue.Queue[Any], count: int, timeout_s: float = 30.0) -> list[Any]:
    """``count`` callbacks' (result, error), each waited for with a deadline."""
    return [answers.get(timeout=timeout_s) for _ in range(count)]


def test_stream_answers_each_request_with_its_id(grpc_client: Any) -> None:
    answers: queue.Queue[Any] = queue.Queue()
    grpc_client.start_stream(callback=lambda result, error: answers.put((result, error)))
    try:
        sent = {}
        for index in range(8):
            data = np.full((1, 3), index, np.float32)
            sent[f"req-{index}"] = data
            grpc_client.async_stream_infer(
                "identity_fp32", [grpc_input(data)], request_id=f"req-{index}"
            )
        got = collect(answers, len(sent))
    finally:
        grpc_client.stop_stream()
    assert [error for _, error in got] == [None] * len(sent)
    by_id = {result.get_response().id: result.as_numpy("OUTPUT0") for result, _ in got}
    assert sorted(by_id) == sorted(sent)
    for request_id, data in sent.items():
        np.testing.assert_array_equal(by_id[request_id], data)


def test_stream_errors_mid_stream_leave_it_open(grpc_client: Any) -> None:
    answers: queue.Queue[Any] = queue.Queue()
    grpc_client.start_stream(callback=lambda result, error: answers.put((result, error)))
    try:
        good = np.ones((2, 3), np.float32)
        grpc_client.async_stream_infer("identity_fp32", [grpc_input(good)], request_id="first")
        grpc_client.async_stream_infer("no_such_model", [grpc_input(good)], request_id="unknown")
        grpc_client.async_stream_infer("add_sub", [grpc_input(good)], request_id="bad-shape")
        grpc_client.async_stream_infer("identity_fp32", [grpc_input(good * 2)], request_id="last")
        got = collect(answers, 4)
    finally:
        grpc_client.stop_stream()
    results = {result.get_response().id: result for result, error in got if error is None}
    errors = [error.message() for result, error in got if error is not None]
    assert sorted(results) == ["first", "last"]
    np.testing.assert_array_equal(results["last"].as_numpy("OUTPUT0"), good * 2)
    assert len(errors) == 2
    assert any("no_such_model" in message for message in errors), errors
    assert any("expected shape [-1, 4]" in message for message in errors), errors


# -- classification ----------------------------------------------------------------------------

EXPECTED_TOP2 = [
    [b"0.700000:1:dog", b"0.200000:2:bird"],
    [b"0.500000:0:cat", b"0.300000:2:bird"],
]


def test_class_count_over_grpc(grpc_client: Any) -> None:
    output = grpcclient.InferRequestedOutput("OUTPUT0", class_count=2)
    result = grpc_client.infer("scores", [grpc_input(SCORES)], outputs=[output])
    assert result.as_numpy("OUTPUT0").tolist() == EXPECTED_TOP2


@pytest.mark.parametrize("binary", [True, False])
def test_class_count_over_http(http_client: Any, binary: bool) -> None:
    output = httpclient.InferRequestedOutput("OUTPUT0", binary_data=binary, class_count=2)
    result = http_client.infer("scores", [http_input(SCORES)], outputs=[output])
    got = result.as_numpy("OUTPUT0").tolist()
    if not binary:  # JSON strings come back as str
        got = [[item.encode() if isinstance(item, str) else item for item in row] for row in got]
    assert got == EXPECTED_TOP2


def test_class_count_without_labels_and_above_the_classes(grpc_client: Any) -> None:
    output = grpcclient.InferRequestedOutput("OUTPUT0", class_count=10)
    data = np.array([[1.0, 3.0]], np.float32)
    result = grpc_client.infer("identity_fp32", [grpc_input(data)], outputs=[output])
    assert result.as_numpy("OUTPUT0").tolist() == [[b"3.000000:1", b"1.000000:0"]]


# -- load_model(config=...) ------------------------------------------------------------------


def test_load_with_triton_config_round_trips_over_http(http_client: Any) -> None:
    before = http_client.get_model_config("batched_http")
    assert before["max_batch_size"] == 8
    assert before["instance_group"][0]["count"] == 2
    http_client.load_model("batched_http", config=json.dumps(before))
    assert http_client.is_model_ready("batched_http")
    assert http_client.get_model_config("batched_http") == before


def test_load_with_triton_config_round_trips_over_grpc(grpc_client: Any) -> None:
    before = grpc_client.get_model_config("batched_grpc", as_json=True)["config"]
    assert before["dynamic_batching"]["preferred_batch_size"] == [4]
    grpc_client.load_model("batched_grpc", config=json.dumps(before))
    assert grpc_client.is_model_ready("batched_grpc")
    assert grpc_client.get_model_config("batched_grpc", as_json=True)["config"] == before


def test_load_with_triton_config_changes_what_it_says(grpc_client: Any) -> None:
    config = grpc_client.get_model_config("scratch", as_json=True)["config"]
    config["max_batch_size"] = 4
    config["input"][0]["dims"] = ["-1"]  # protobuf's JSON writes int64 as strings
    config["output"][0]["dims"] = ["-1"]
    grpc_client.load_model("scratch", config=json.dumps(config))
    after = grpc_client.get_model_config("scratch", as_json=True)["config"]
    assert after["max_batch_size"] == 4
    assert "dynamic_batching" in after


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"sequence_batching": {"max_sequence_idle_microseconds": 5}}, "sequence_batching"),
        ({"instance_group": [{"kind": "KIND_GPU", "count": 1}]}, "KIND_GPU"),
        ({"name": "another_model"}, "another_model"),
    ],
)
def test_load_refuses_what_serval_does_not_have(
    http_client: Any, grpc_client: Any, change: dict[str, Any], named: str
) -> None:
    config = {**http_client.get_model_config("scratch"), **change}
    with pytest.raises(InferenceServerException) as http_info:
        http_client.load_model("scratch", config=json.dumps(config))
    assert "400" in str(http_info.value.status())
    assert named in http_info.value.message()
    with pytest.raises(InferenceServerException) as grpc_info:
        grpc_client.load_model("scratch", config=json.dumps(config))
    assert grpc_info.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert named in grpc_info.value.message()
    assert grpc_client.is_model_ready("scratch")  # a refused load changes nothing


# -- parameters serval refuses -------------------------------------------------------------------


def test_sequence_parameters_are_refused(http_client: Any, grpc_client: Any) -> None:
    data = np.ones((1, 3), np.float32)
    with pytest.raises(InferenceServerException) as grpc_info:
        grpc_client.infer("identity_fp32", [grpc_input(data)], sequence_id=7, sequence_start=True)
    assert grpc_info.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert "sequence batching" in grpc_info.value.message()
    with pytest.raises(InferenceServerException) as http_info:
        http_client.infer("identity_fp32", [http_input(data)], sequence_id=7, sequence_end=True)
    assert "400" in str(http_info.value.status())
    assert "sequence batching" in http_info.value.message()


def test_shared_memory_inputs_are_refused(http_client: Any, grpc_client: Any) -> None:
    grpc_tensor = grpcclient.InferInput("INPUT0", [1, 3], "FP32")
    grpc_tensor.set_shared_memory("region0", 12)
    with pytest.raises(InferenceServerException) as grpc_info:
        grpc_client.infer("identity_fp32", [grpc_tensor])
    assert grpc_info.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert "shared-memory" in grpc_info.value.message()
    assert "shared_memory_region" in grpc_info.value.message()
    http_tensor = httpclient.InferInput("INPUT0", [1, 3], "FP32")
    http_tensor.set_shared_memory("region0", 12)
    output = httpclient.InferRequestedOutput("OUTPUT0")
    with pytest.raises(InferenceServerException) as http_info:
        http_client.infer("identity_fp32", [http_tensor], outputs=[output])
    assert "400" in str(http_info.value.status())
    assert "shared-memory" in http_info.value.message()


def test_shared_memory_outputs_are_refused(grpc_client: Any) -> None:
    output = grpcclient.InferRequestedOutput("OUTPUT0")
    output.set_shared_memory("region1", 12)
    with pytest.raises(InferenceServerException) as info:
        grpc_client.infer(
            "identity_fp32", [grpc_input(np.ones((1, 3), np.float32))], outputs=[output]
        )
    assert info.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert "output 'OUTPUT0'" in info.value.message()
    assert "shared-memory" in info.value.message()
