"""Bearer tokens and roles on REST and gRPC against the real server (docs/security.md)."""

from __future__ import annotations

import contextlib
import queue
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from tritonclient.utils import InferenceServerException

from serval.protocols.grpc.generated.tensorflow.core.framework import types_pb2
from serval.protocols.grpc.generated.tensorflow_serving.apis import (
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)
from serval.testing import RunningServer, run_server
from tests.onnx_models import linear, write_model

pytestmark = pytest.mark.e2e

READ = "read-token-0123456789abcdef"
INFER = "infer-token-0123456789abcdef"
ADMIN = "admin-token-0123456789abcdef"
INFER_BODY = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 2], "data": [1, 2]}]}


def write_tokens(folder: Path) -> Path:
    path = folder / "tokens.txt"
    path.write_text(
        f"# serval tokens\nread {READ}\ninfer {INFER}  # the client app\n\nadmin {ADMIN}\n",
        encoding="utf-8",
    )
    return path


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tmp_path_factory.mktemp("repo")
    write_model(repo, "linear", 1, linear([1.0, 2.0], 0.0))
    (repo / "broken" / "1").mkdir(parents=True)
    (repo / "broken" / "1" / "model.onnx").write_bytes(b"this is not an onnx file")
    return repo


@pytest.fixture(scope="module")
def server(repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    tokens = write_tokens(tmp_path_factory.mktemp("auth"))
    with run_server(
        repository, "--auth-tokens", str(tokens), "--strict-readiness", "false"
    ) as running:
        yield running


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def http(server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.http_url, timeout=10) as client:
        yield client


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v2"),
        ("GET", "/v2/models/linear"),
        ("GET", "/v2/models/stats"),
        ("GET", "/metrics"),
        ("GET", "/v1/models/linear"),
        ("POST", "/v2/models/linear/infer"),
        ("POST", "/v1/models/linear:predict"),
        ("POST", "/v2/repository/index"),
        ("GET", "/no/such/endpoint"),
    ],
)
def test_without_a_token_every_endpoint_answers_401(
    http: httpx.Client, method: str, path: str
) -> None:
    for headers in ({}, bearer("not-a-token-0123456789"), {"Authorization": "Basic abc"}):
        response = http.request(method, path, headers=headers)
        assert response.status_code == 401, (path, response.text)
        assert response.headers["www-authenticate"] == "Bearer"
        assert "authentica" in response.json()["error"]


def test_health_probes_are_open_by_default(http: httpx.Client) -> None:
    assert http.get("/v2/health/live").status_code == 200
    assert http.get("/v2/health/ready").status_code == 200


def test_read_token_reads_but_cannot_infer(http: httpx.Client) -> None:
    assert http.get("/v2/models/linear", headers=bearer(READ)).status_code == 200
    assert http.get("/metrics", headers=bearer(READ)).status_code == 200
    assert http.get("/v2/models/stats", headers=bearer(READ)).status_code == 200
    refused = http.post("/v2/models/linear/infer", json=INFER_BODY, headers=bearer(READ))
    assert refused.status_code == 403, refused.text
    assert "'infer' role" in refused.json()["error"]
    assert "insufficient_scope" in refused.headers["www-authenticate"]
    v1 = http.post("/v1/models/linear:predict", json={"instances": [[1, 2]]}, headers=bearer(READ))
    assert v1.status_code == 403


def test_infer_token_infers_but_cannot_administer(http: httpx.Client) -> None:
    answer = http.post("/v2/models/linear/infer", json=INFER_BODY, headers=bearer(INFER))
    assert answer.status_code == 200, answer.text
    assert answer.json()["outputs"][0]["data"] == [5.0]
    v1 = http.post("/v1/models/linear:predict", json={"instances": [[1, 2]]}, headers=bearer(INFER))
    assert v1.status_code == 200, v1.text
    for path in ("/v2/repository/index", "/v2/repository/models/linear/unload"):
        refused = http.post(path, headers=bearer(INFER))
        assert refused.status_code == 403, refused.text
        assert "'admin' role" in refused.json()["error"]


def test_admin_token_administers(http: httpx.Client) -> None:
    index = http.post("/v2/repository/index", headers=bearer(ADMIN))
    assert index.status_code == 200, index.text
    assert {row["name"] for row in index.json()} == {"linear", "broken"}
    load = http.post("/v2/repository/models/linear/load", headers=bearer(ADMIN))
    assert load.status_code == 200, load.text


def test_traffic_changes_need_admin_and_reading_needs_read(http: httpx.Client) -> None:
    assert http.get("/v2/models/linear/traffic", headers=bearer(READ)).status_code == 200
    assert http.get("/v2/models/linear/traffic").status_code == 401
    policy = {"routes": {"1": 1}}
    for token in (READ, INFER):
        refused = http.put("/v2/models/linear/traffic", json=policy, headers=bearer(token))
        assert refused.status_code == 403, refused.text
        assert "'admin' role" in refused.json()["error"]
        rollback = http.post("/v2/models/linear/traffic/rollback", headers=bearer(token))
        assert rollback.status_code == 403, rollback.text
    put = http.put("/v2/models/linear/traffic", json=policy, headers=bearer(ADMIN))
    assert put.status_code == 200, put.text
    rolled = http.post("/v2/models/linear/traffic/rollback", headers=bearer(ADMIN))
    assert rolled.json()["rollback"] == {"to": "1", "reason": "manual"}


def test_errors_hide_details_from_all_but_admin(http: httpx.Client, repository: Path) -> None:
    hidden = http.post("/v2/models/broken/infer", json=INFER_BODY, headers=bearer(INFER))
    assert hidden.status_code == 503, hidden.text
    message = hidden.json()["error"]
    assert "not available now" in message
    assert hidden.headers["x-request-id"] in message
    assert str(repository) not in hidden.text
    assert "InvalidProtobuf" not in message
    status = http.get("/v1/models/broken", headers=bearer(READ)).json()
    assert status["model_version_status"][0]["status"]["error_message"].startswith(
        "failed to load; the details are in the server log"
    )
    shown = http.post("/v2/models/broken/infer", json=INFER_BODY, headers=bearer(ADMIN))
    assert shown.status_code == 503
    assert str(repository) in shown.json()["error"]  # an admin sees the whole reason


def test_tokens_never_appear_in_the_log(server: RunningServer, http: httpx.Client) -> None:
    http.get("/v2", headers=bearer("an-unknown-token-0123456789"))
    log = server.log()
    for token in (READ, INFER, ADMIN, "an-unknown-token-0123456789"):
        assert token not in log
    assert "authentication on: 3 tokens" in log


# -- gRPC ----------------------------------------------------------------------------------


def grpc_call(server: RunningServer, token: str | None, call: str, *args: object) -> object:
    client = triton_grpc.InferenceServerClient(server.grpc_address)
    try:
        headers = {"authorization": f"Bearer {token}"} if token else None
        return getattr(client, call)(*args, headers=headers)
    finally:
        client.close()


def grpc_status(server: RunningServer, token: str | None, call: str, *args: object) -> str:
    with pytest.raises(InferenceServerException) as caught:
        grpc_call(server, token, call, *args)
    return str(caught.value.status())


def infer_inputs() -> list[triton_grpc.InferInput]:
    tensor = triton_grpc.InferInput("x", [1, 2], "FP32")
    tensor.set_data_from_numpy(np.array([[1.0, 2.0]], dtype=np.float32))
    return [tensor]


def test_grpc_roles(server: RunningServer) -> None:
    assert grpc_call(server, None, "is_server_live") is True  # health is open
    assert grpc_call(server, None, "is_server_ready") is True
    assert "UNAUTHENTICATED" in grpc_status(server, None, "get_server_metadata")
    assert "UNAUTHENTICATED" in grpc_status(server, "wrong-token-0123456789", "get_server_metadata")
    assert grpc_call(server, READ, "get_model_metadata", "linear") is not None
    assert "PERMISSION_DENIED" in grpc_status(server, READ, "infer", "linear", infer_inputs())
    result = grpc_call(server, INFER, "infer", "linear", infer_inputs())
    assert result.as_numpy("y").tolist() == [[5.0]]  # type: ignore[attr-defined]
    assert "PERMISSION_DENIED" in grpc_status(server, INFER, "get_model_repository_index")
    assert grpc_call(server, ADMIN, "get_model_repository_index") is not None


def stream_one(server: RunningServer, token: str) -> tuple[object, object]:
    """One request on a ModelStreamInfer stream: the callback's (result, error)."""
    answers: queue.Queue[tuple[object, object]] = queue.Queue()
    client = triton_grpc.InferenceServerClient(server.grpc_address)
    try:
        client.start_stream(
            callback=lambda result, error: answers.put((result, error)),
            headers={"authorization": f"Bearer {token}"},
        )
        # A refused stream may end before this request goes: the callback says why.
        with contextlib.suppress(InferenceServerException):
            client.async_stream_infer("linear", infer_inputs())
        return answers.get(timeout=30)
    finally:
        client.stop_stream()
        client.close()


def test_grpc_streams_need_the_infer_role(server: RunningServer) -> None:
    result, error = stream_one(server, INFER)
    assert error is None
    assert result.as_numpy("y").tolist() == [[5.0]]  # type: ignore[attr-defined]
    result, error = stream_one(server, READ)
    assert result is None
    assert "PERMISSION_DENIED" in str(error.status())  # type: ignore[attr-defined]


def test_grpc_refusals_say_what_is_missing(server: RunningServer) -> None:
    with grpc.insecure_channel(server.grpc_address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        assert stub.Check(health_pb2.HealthCheckRequest()).status == 1  # SERVING, open
    with pytest.raises(InferenceServerException) as caught:
        grpc_call(server, READ, "load_model", "linear")
    assert "'admin' role" in str(caught.value.message())


# -- settings ------------------------------------------------------------------------------


def test_closed_health_and_rate_limits(repository: Path, tmp_path: Path) -> None:
    tokens = write_tokens(tmp_path)
    with (
        run_server(
            repository,
            "--auth-tokens",
            str(tokens),
            "--auth-open-health",
            "false",
            "--auth-rate-limit",
            "0.5",
            "--auth-rate-burst",
            "3",
            "--strict-readiness",
            "false",
            grpc=False,
            auth_token=READ,
        ) as server,
        httpx.Client(base_url=server.http_url, timeout=10) as http,
    ):
        assert http.get("/v2/health/live").status_code == 401
        statuses = [http.get("/v2", headers=bearer(INFER)).status_code for _ in range(4)]
        assert statuses[:3] == [200, 200, 200]
        limited = http.get("/v2", headers=bearer(INFER))
        assert limited.status_code == 429, limited.text
        assert int(limited.headers["retry-after"]) >= 1
        assert "rate limit" in limited.json()["error"]
        # Each token has its own budget.
        assert http.get("/v2", headers=bearer(ADMIN)).status_code == 200


def test_a_bad_token_file_stops_the_start(repository: Path, tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.txt"
    tokens.write_text(f"read {READ}\nwriter {INFER}\n", encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "serval", "serve", str(repository), "--auth-tokens", str(tokens)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "line 2: unknown role 'writer'" in done.stderr
    assert INFER not in done.stderr


def test_listening_beyond_loopback_without_tokens_warns(repository: Path) -> None:
    with run_server(repository, "--host", "0.0.0.0", "--strict-readiness", "false") as server:
        log = server.log()
    assert "without --auth-tokens" in log
    assert "WARNING" in log or '"warning"' in log.lower()


def test_grpc_streaming_rpcs_are_checked_too(server: RunningServer) -> None:
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    with grpc.insecure_channel(server.grpc_address) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            list(stub.ServerReflectionInfo(iter([request]), timeout=10))
        assert caught.value.code() is grpc.StatusCode.UNAUTHENTICATED
        answers = list(
            stub.ServerReflectionInfo(
                iter([request]), timeout=10, metadata=(("authorization", f"Bearer {READ}"),)
            )
        )
        names = {s.name for s in answers[0].list_services_response.service}
        assert "inference.GRPCInferenceService" in names


def test_tf_serving_rpcs_need_the_same_roles(server: RunningServer) -> None:
    predict = predict_pb2.PredictRequest()
    predict.model_spec.name = "linear"
    x = predict.inputs["x"]
    x.dtype = types_pb2.DT_FLOAT
    x.tensor_shape.dim.add(size=1)
    x.tensor_shape.dim.add(size=2)
    x.float_val.extend([1.0, 2.0])
    status = get_model_status_pb2.GetModelStatusRequest()
    status.model_spec.name = "linear"
    with grpc.insecure_channel(server.grpc_address) as channel:
        prediction = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        models = model_service_pb2_grpc.ModelServiceStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            prediction.Predict(predict, timeout=10, metadata=(("authorization", f"Bearer {READ}"),))
        assert caught.value.code() is grpc.StatusCode.PERMISSION_DENIED
        reply = prediction.Predict(
            predict, timeout=10, metadata=(("authorization", f"Bearer {INFER}"),)
        )
        assert list(reply.outputs["y"].float_val) == [5.0]
        with pytest.raises(grpc.RpcError) as caught:
            models.GetModelStatus(status, timeout=10)
        assert caught.value.code() is grpc.StatusCode.UNAUTHENTICATED
        answer = models.GetModelStatus(
            status, timeout=10, metadata=(("authorization", f"Bearer {READ}"),)
        )
        assert [s.version for s in answer.model_version_status] == [1]
