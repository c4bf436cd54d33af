"""The real server's logs are JSON lines when stderr is not a terminal; every line about a
request carries its id (the client's x-request-id, else the V2 ``id``, else a generated one),
which the response echoes in x-request-id; the access log is a switch."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton_grpc

from serval.testing import RunningServer, run_server
from tests.onnx_models import linear, write_model

pytestmark = pytest.mark.e2e

BODY = {"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [1.0, 2.0]}]}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    repository = tmp_path_factory.mktemp("repository")
    write_model(repository, "linear", 1, linear([1.0, 2.0], 0.0))
    with run_server(repository, "--access-log") as running:
        yield running


def lines(server: RunningServer) -> list[dict[str, object]]:
    return [json.loads(line) for line in server.log().splitlines() if line.strip()]


def access_lines(server: RunningServer, request_id: str) -> list[dict[str, object]]:
    """The access log lines for ``request_id``. The server writes a line once the response
    has gone out, so the client may read the log a moment before it is there: wait for it."""
    deadline = time.monotonic() + 5.0
    while True:
        found = [
            line
            for line in lines(server)
            if line.get("logger") == "serval.access" and line.get("request_id") == request_id
        ]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.02)


def test_every_line_is_json_and_keeps_the_message_text(server: RunningServer) -> None:
    messages = [line["message"] for line in lines(server)]
    assert any("model linear version 1 loaded" in str(m) for m in messages)
    assert all({"time", "level", "logger", "message"} <= line.keys() for line in lines(server))


def test_request_id_from_the_header(server: RunningServer) -> None:
    reply = httpx.post(
        f"{server.http_url}/v2/models/linear/infer",
        json={**BODY, "id": "body-ignored"},
        headers={"x-request-id": "client-header-1"},
    )
    assert reply.status_code == 200
    assert reply.headers["x-request-id"] == "client-header-1"
    assert reply.json()["id"] == "body-ignored"  # the V2 id is still echoed in the body
    (line,) = access_lines(server, "client-header-1")
    assert line["message"].startswith("POST /v2/models/linear/infer 200 ")  # type: ignore[union-attr]
    assert line["status"] == 200 and line["path"] == "/v2/models/linear/infer"


def test_request_id_from_the_v2_id(server: RunningServer) -> None:
    reply = httpx.post(f"{server.http_url}/v2/models/linear/infer", json={**BODY, "id": "v2-id-7"})
    assert reply.headers["x-request-id"] == "v2-id-7"
    (line,) = access_lines(server, "v2-id-7")
    assert line["status"] == 200


def test_errors_carry_the_id_too(server: RunningServer) -> None:
    reply = httpx.post(
        f"{server.http_url}/v2/models/nope/infer", json=BODY, headers={"x-request-id": "err-1"}
    )
    assert reply.status_code == 404
    assert reply.headers["x-request-id"] == "err-1"
    (line,) = access_lines(server, "err-1")
    assert line["status"] == 404


def test_generated_ids_are_unique(server: RunningServer) -> None:
    ids = {httpx.get(f"{server.http_url}/v2/health/live").headers["x-request-id"] for _ in range(5)}
    assert len(ids) == 5
    for request_id in ids:
        assert len(access_lines(server, request_id)) == 1


def test_grpc_request_id_from_metadata(server: RunningServer) -> None:
    with triton_grpc.InferenceServerClient(server.grpc_address) as client:
        tensor = triton_grpc.InferInput("x", [1, 2], "FP32")
        tensor.set_data_from_numpy(np.array([[1.0, 2.0]], np.float32))
        client.infer("linear", [tensor], headers={"x-request-id": "grpc-meta-1"})
        client.infer("linear", [tensor], request_id="grpc-id-2")
    (line,) = access_lines(server, "grpc-meta-1")
    assert line["message"].startswith("/inference.GRPCInferenceService/ModelInfer OK ")  # type: ignore[union-attr]
    assert len(access_lines(server, "grpc-id-2")) == 1


def test_no_access_log_by_default(tmp_path: Path) -> None:
    write_model(tmp_path, "linear", 1, linear([1.0, 2.0], 0.0))
    with run_server(tmp_path, "--log-format", "text", grpc=False) as server:
        reply = httpx.post(f"{server.http_url}/v2/models/linear/infer", json=BODY)
        assert reply.status_code == 200 and reply.headers["x-request-id"]
    log = server.log()
    assert "serval.access" not in log
    assert "INFO    serval.models: model linear version 1 loaded" in log
