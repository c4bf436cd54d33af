"""The command line: serve with flags and SERVAL_* variables, models list/load/unload, and a
graceful shutdown that finishes requests in flight."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

from serval.testing import run_server
from tests.e2e.workload import wait_for_workload
from tests.onnx_models import busy, linear, write_model

pytestmark = pytest.mark.e2e


def serval(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "serval", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_models_list_load_unload(tmp_path: Path) -> None:
    write_model(tmp_path, "a", 1, linear([1.0], 0.0))
    write_model(tmp_path, "b", 1, linear([1.0], 0.0))
    with run_server(
        tmp_path, "--model-control-mode", "explicit", "--load-model", "a", grpc=False
    ) as server:
        url = ["--url", server.http_url]
        listed = serval("models", "list", *url)  # --url before or after the action
        assert listed.returncode == 0, listed.stderr
        lines = listed.stdout.splitlines()
        assert lines[0].split() == ["MODEL", "VERSION", "STATE", "REASON"]
        assert lines[1].split() == ["a", "1", "READY"]
        assert lines[2].split()[:3] == ["b", "-", "UNAVAILABLE"]
        assert serval("models", "load", "b", *url).returncode == 0
        rows = [line.split() for line in serval("models", *url, "list").stdout.splitlines()]
        assert ["b", "1", "READY"] in rows
        assert serval("models", *url, "unload", "a").returncode == 0
        missing = serval("models", *url, "load", "zzz")
        assert missing.returncode == 1
        assert "'zzz' is not in the model repository" in missing.stderr
    assert "cannot reach" in serval("models", "--url", server.http_url, "list").stderr


def test_environment_variables_configure_serve(tmp_path: Path) -> None:
    write_model(tmp_path, "a", 1, linear([1.0], 0.0))
    write_model(tmp_path, "b", 1, linear([1.0], 0.0))
    write_model(tmp_path, "c", 1, linear([1.0], 0.0))
    env = {"SERVAL_MODEL_CONTROL_MODE": "explicit", "SERVAL_LOAD_MODEL": "b"}
    with run_server(tmp_path, grpc=False, env=env) as server:
        rows = httpx.post(f"{server.http_url}/v2/repository/index", json={"ready": True}).json()
        assert [r["name"] for r in rows] == ["b"]
    # Flags win over the environment; one flag may list several models.
    with run_server(tmp_path, "--load-model", "a,c", grpc=False, env=env) as server:
        rows = httpx.post(f"{server.http_url}/v2/repository/index", json={"ready": True}).json()
        assert [r["name"] for r in rows] == ["a", "c"]


def test_bad_settings_are_reported(tmp_path: Path) -> None:
    result = serval("serve", str(tmp_path), "--http-port", "70000")
    assert result.returncode == 2
    assert "http_port" in result.stderr
    result = serval("serve", str(tmp_path / "missing"))
    assert result.returncode == 2
    assert "is not a folder" in result.stderr
    result = serval("serve", "s3:///no-bucket")
    assert result.returncode == 2
    assert "expected s3://bucket/prefix" in result.stderr
    result = serval("serve", str(tmp_path), "--strict-readiness", "maybe")
    assert result.returncode == 2 and "--strict-readiness" in result.stderr


def test_sigterm_finishes_requests_in_flight(tmp_path: Path) -> None:
    # `busy` runs n rounds of a matrix product: thousands keep the model busy for a while.
    write_model(tmp_path, "slow", 1, busy())
    body = {
        "inputs": [
            {"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]},
            {"name": "n", "datatype": "INT64", "shape": [1, 1], "data": [4000]},
        ]
    }
    results: list[int] = []
    errors: list[BaseException] = []
    with run_server(tmp_path, grpc=False) as server:

        def send() -> None:
            try:
                response = httpx.post(
                    f"{server.http_url}/v2/models/slow/infer", json=body, timeout=60
                )
                results.append(response.status_code)
            except BaseException as exc:  # re-raised below, in the test's thread
                errors.append(exc)

        sender = threading.Thread(target=send)
        sender.start()
        wait_for_workload(server, "slow", lambda now: now.running >= 1 or not sender.is_alive())
        assert sender.is_alive(), (results, errors)  # the request runs in the model now
        server.process.send_signal(signal.SIGTERM)
        sender.join(60)
        assert server.process.wait(30) == 0
    if errors:
        raise errors[0]
    assert results == [200]
    log = server.log()
    assert "shutting down" in log
    assert "model slow version 1 unloaded" in log
    assert "stopped" in log


@pytest.mark.parametrize("flag", ["--http-port", "--grpc-port"])
def test_a_port_in_use_is_named_with_its_flag(tmp_path: Path, flag: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        ports = {"--http-port": "0", "--grpc-port": "0", flag: port}
        result = serval(
            "serve", str(tmp_path), "--host", "127.0.0.1", *(a for p in ports.items() for a in p)
        )
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr  # no gRPC C-core lines
    protocol = "REST" if flag == "--http-port" else "gRPC"
    assert f"{protocol} cannot listen on 127.0.0.1:{port}: the port is in use" in lines[0]
    assert f"choose another port with {flag}" in lines[0]
