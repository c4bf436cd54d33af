"""Graceful scale-in: on SIGTERM the server reports not ready (REST 503, gRPC health
NOT_SERVING) while it keeps serving for ``--drain-delay-s``, then finishes what is in flight
and exits 0. A second signal ends the delay; delay 0 stops at once, as before."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import httpx
import pytest

from serval.protocols.grpc.generated import grpc_health_v1_pb2 as health_pb2
from serval.protocols.grpc.generated import grpc_health_v1_pb2_grpc as health_pb2_grpc
from serval.testing import RunningServer, run_server
from tests.onnx_models import linear, write_model
from tests.runtimes.builders import write_python_model

pytestmark = pytest.mark.e2e

# Blocks in predict until the test creates the gate file; says it started with another file,
# so the test knows the request is in flight without sleeping.
_GATED_MODEL = """
import pathlib
import time

from serval import ServingModel, TensorInfo

FOLDER = pathlib.Path({folder!r})


class Model(ServingModel):
    inputs = [TensorInfo("x", "FP64", [-1, 1])]
    outputs = [TensorInfo("y", "FP64", [-1, 1])]

    def predict(self, data):
        (FOLDER / "started").touch()
        deadline = time.monotonic() + 60
        while not (FOLDER / "gate").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        return {{"y": data["x"] * 2}}
"""

_QUICK_BODY = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 1], "data": [3.0]}]}
_GATED_BODY = {"inputs": [{"name": "x", "datatype": "FP64", "shape": [1, 1], "data": [4.0]}]}


def _wait(condition: Callable[[], bool], what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def _health(server: RunningServer, service: str) -> int:
    with grpc.insecure_channel(server.grpc_address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        response = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        return int(response.status)


def _repository(tmp_path: Path) -> tuple[Path, Path]:
    repository, gate = tmp_path / "models", tmp_path / "gate"
    gate.mkdir()
    write_model(repository, "quick", 1, linear([1.0], 0.0))
    write_python_model(repository / "gated" / "1", _GATED_MODEL.format(folder=str(gate)))
    return repository, gate


def test_sigterm_reports_not_ready_while_serving_then_finishes_in_flight(tmp_path: Path) -> None:
    repository, gate = _repository(tmp_path)
    in_flight: list[httpx.Response] = []
    errors: list[BaseException] = []
    with run_server(repository, "--drain-delay-s", "30") as server:
        assert _health(server, "") == health_pb2.HealthCheckResponse.SERVING

        def send() -> None:
            try:
                in_flight.append(
                    httpx.post(
                        f"{server.http_url}/v2/models/gated/infer", json=_GATED_BODY, timeout=60
                    )
                )
            except BaseException as exc:  # re-raised below, in the test's thread
                errors.append(exc)

        sender = threading.Thread(target=send)
        sender.start()
        _wait(lambda: (gate / "started").exists() or not sender.is_alive(), "the gated request")
        assert sender.is_alive(), (in_flight, errors)
        server.process.send_signal(signal.SIGTERM)

        # Not ready at once, and says why...
        def not_ready() -> bool:
            return httpx.get(f"{server.http_url}/v2/health/ready").status_code == 503

        _wait(not_ready, "readiness to go 503", timeout_s=5)
        ready = httpx.get(f"{server.http_url}/v2/health/ready")
        assert ready.json()["draining"] is True and "draining" in ready.json()["error"]
        assert httpx.get(f"{server.http_url}/v2/health/live").status_code == 200
        not_serving = health_pb2.HealthCheckResponse.NOT_SERVING
        for service in ("", "inference.GRPCInferenceService", "quick", "gated"):
            assert _health(server, service) == not_serving, service
        # ...while inference still answers, over REST and gRPC's port alike.
        answer = httpx.post(f"{server.http_url}/v2/models/quick/infer", json=_QUICK_BODY)
        assert answer.status_code == 200 and answer.json()["outputs"][0]["data"] == [3.0]
        assert server.process.poll() is None

        # A second SIGTERM ends the delay; the request in flight still finishes.
        server.process.send_signal(signal.SIGTERM)
        _wait(lambda: "shutting down: finishing requests in flight" in server.log(), "the stop")
        (gate / "gate").touch()
        sender.join(60)
        assert server.process.wait(30) == 0
    if errors:
        raise errors[0]
    assert [r.status_code for r in in_flight] == [200]
    assert in_flight[0].json()["outputs"][0]["data"] == [8.0]
    log = server.log()
    assert "draining: not ready, still serving for 30.0 s" in log
    assert "stopped" in log


def test_the_delay_passes_then_the_server_exits_0(tmp_path: Path) -> None:
    repository, _ = _repository(tmp_path)
    with run_server(repository, "--drain-delay-s", "0.5", grpc=False) as server:
        signalled = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(30) == 0
        assert time.monotonic() - signalled >= 0.5
    assert "draining: not ready, still serving for 0.5 s" in server.log()


def test_delay_0_stops_at_once(tmp_path: Path) -> None:
    repository, gate = _repository(tmp_path)
    with run_server(repository, "--drain-delay-s", "0", grpc=False) as server:
        results: list[int] = []
        sender = threading.Thread(
            target=lambda: results.append(
                httpx.post(
                    f"{server.http_url}/v2/models/gated/infer", json=_GATED_BODY, timeout=60
                ).status_code
            )
        )
        sender.start()
        _wait((gate / "started").exists, "the gated request")
        server.process.send_signal(signal.SIGTERM)

        # It stops accepting at once: new connections are refused while one is in flight.
        def refused() -> bool:
            try:
                httpx.get(f"{server.http_url}/v2/health/live", timeout=1)
            except httpx.ConnectError:
                return True
            return False

        _wait(refused, "the listener to close", timeout_s=10)
        (gate / "gate").touch()
        sender.join(60)
        assert server.process.wait(30) == 0
    assert results == [200]
    assert "draining:" not in server.log()
