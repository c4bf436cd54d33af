"""Versions come and go while clients send requests: no request fails."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest

from serval.testing import run_server
from tests.onnx_models import linear, remove_version, write_model

pytestmark = pytest.mark.e2e

POLL_S = 0.2
BODY = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 1], "data": [1.0]}]}


class Load:
    """Clients sending requests without pause; records failures and the answering version."""

    def __init__(self, url: str, clients: int = 4) -> None:
        self.url = url
        self.stop = threading.Event()
        self.failures: list[str] = []
        self.last_version = ""
        self.requests = 0
        self.threads = [threading.Thread(target=self._run) for _ in range(clients)]

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            while not self.stop.is_set():
                response = client.post("/v2/models/m/infer", json=BODY)
                self.requests += 1
                if response.status_code != 200:
                    self.failures.append(f"{response.status_code} {response.text}")
                    continue
                body = response.json()
                # The version and the value it computed must agree.
                value = body["outputs"][0]["data"][0]
                assert value == float(body["model_version"]), body
                self.last_version = body["model_version"]

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join()

    def wait_for_version(self, version: str, timeout_s: float) -> float:
        started = time.monotonic()
        while time.monotonic() - started < timeout_s:
            if self.last_version == version:
                return time.monotonic() - started
            time.sleep(0.01)
        raise AssertionError(f"version {version} did not answer within {timeout_s} s")


def test_add_then_remove_a_version_under_load(tmp_path: Path) -> None:
    # Version N computes y = N for x = 1, so every answer proves which version ran.
    write_model(tmp_path, "m", 1, linear([0.0], 1.0))
    with (
        run_server(tmp_path, "--poll-interval-s", str(POLL_S), grpc=False) as server,
        Load(server.http_url) as load,
    ):
        load.wait_for_version("1", 10)
        write_model(tmp_path, "m", 2, linear([0.0], 2.0))
        took = load.wait_for_version("2", 10)
        # Poll interval plus load time, with room for a busy CI machine.
        assert took < POLL_S + 5.0
        remove_version(tmp_path, "m", 2)
        load.wait_for_version("1", 10)
        time.sleep(0.5)
    assert load.failures == []
    assert load.requests > 50
    log = server.log()
    assert "model m version 2 loaded" in log
    assert "model m version 2 unloaded" in log
