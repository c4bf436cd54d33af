"""The command line: serve with flags and SERVAL_* variables, models list/load/unload, and a
graceful shutdown that finishes requests in flight."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from serval.core.tensors.datatypes import DataType
from serval.testing import run_server
from tests.onnx_models import identity, linear, write_model

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
        listed = serval("models", *url, "list")
        assert listed.returncode == 0, listed.stderr
        lines = listed.stdout.splitlines()
        assert lines[0].split() == ["MODEL", "VERSION", "STATE", "REASON"]
        assert lines[1].split() == ["a", "1", "READY"]
        assert lines[2].split()[:3] == ["b", "-", "UNAVAILABLE"]
        assert serval("models", *url, "load", "b").returncode == 0
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
    result = serval("serve", str(tmp_path), "--strict-readiness", "maybe")
    assert result.returncode == 2 and "--strict-readiness" in result.stderr


def test_sigterm_finishes_requests_in_flight(tmp_path: Path) -> None:
    # A 2**22-element string identity request keeps the server busy for a moment.
    write_model(tmp_path, "slow", 1, identity(DataType.BYTES))
    body = {
        "inputs": [
            {
                "name": "INPUT0",
                "datatype": "BYTES",
                "shape": [1, 400_000],
                "data": ["abcdefgh"] * 400_000,
            }
        ]
    }
    results: list[int] = []
    with run_server(tmp_path, grpc=False) as server:

        def send() -> None:
            response = httpx.post(f"{server.http_url}/v2/models/slow/infer", json=body, timeout=60)
            results.append(response.status_code)

        sender = threading.Thread(target=send)
        sender.start()
        time.sleep(0.3)  # the request is being read or run
        server.process.send_signal(signal.SIGTERM)
        sender.join(60)
        assert server.process.wait(30) == 0
    assert results == [200]
    log = server.log()
    assert "shutting down" in log
    assert "model slow version 1 unloaded" in log
    assert "stopped" in log
