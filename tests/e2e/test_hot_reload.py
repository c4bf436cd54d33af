"""Versions come and go while clients send requests: no request fails."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from serval.testing import free_port, run_server
from tests.onnx_models import linear, remove_version, write_model

pytestmark = pytest.mark.e2e

POLL_S = 0.2
BODY = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 1], "data": [1.0]}]}


class Load:
    """Clients sending requests without pause; records failures and the answering version.

    An exception in a client thread (a failed assertion included) stops the load and is raised
    again in the test's thread, by the next wait or on leaving the ``with`` block.
    """

    def __init__(self, url: str, clients: int = 4) -> None:
        self.url = url
        self.stop = threading.Event()
        self.failures: list[str] = []
        self.errors: list[BaseException] = []
        self.last_version = ""
        self.requests = 0
        self._lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run) for _ in range(clients)]

    def _run(self) -> None:
        try:
            self._send_until_stopped()
        except BaseException as exc:
            self.errors.append(exc)
            self.stop.set()

    def _send_until_stopped(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            while not self.stop.is_set():
                response = client.post("/v2/models/m/infer", json=BODY)
                with self._lock:
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
        self.raise_errors()

    def raise_errors(self) -> None:
        if self.errors:
            raise self.errors[0]

    def wait_until(self, condition: Callable[[], bool], what: str, timeout_s: float) -> float:
        """Seconds until ``condition`` held; fails on a client's error or past the deadline."""
        started = time.monotonic()
        while time.monotonic() - started < timeout_s:
            self.raise_errors()
            if condition():
                return time.monotonic() - started
            time.sleep(0.01)
        raise AssertionError(f"{what} within {timeout_s} s")

    def wait_for_version(self, version: str, timeout_s: float) -> float:
        return self.wait_until(
            lambda: self.last_version == version, f"version {version} did not answer", timeout_s
        )

    def wait_for_requests(self, count: int, timeout_s: float) -> None:
        target = self.requests + count
        self.wait_until(lambda: self.requests >= target, f"{count} more requests", timeout_s)


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
        load.wait_for_requests(40, 10)  # version 2 drains and unloads meanwhile
    assert load.failures == []
    assert load.requests > 50
    log = server.log()
    assert "model m version 2 loaded" in log
    assert "model m version 2 unloaded" in log


def test_a_client_thread_failure_fails_the_test() -> None:
    load = Load(f"http://127.0.0.1:{free_port()}", clients=1)  # nothing listens there
    with pytest.raises(httpx.ConnectError), load:
        load.wait_until(lambda: False, "never", 10)
    assert load.errors


def test_repository_mistakes_are_logged_once(tmp_path: Path) -> None:
    write_model(tmp_path, "m", 1, linear([0.0], 1.0))
    write_model(tmp_path, "typo", 1, linear([0.0], 1.0))
    (tmp_path / "typo" / "model.yaml").write_text("version_polcy: all\n")
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "model.onnx").write_bytes(
        (tmp_path / "m" / "1" / "model.onnx").read_bytes()
    )
    args = ("--poll-interval-s", str(POLL_S), "--strict-readiness", "false")
    with (
        run_server(tmp_path, *args, grpc=False) as server,
        httpx.Client(base_url=server.http_url, timeout=10) as client,
    ):
        # Models that arrive later prove that the repository was scanned again meanwhile.
        for later in ("later1", "later2"):
            write_model(tmp_path, later, 1, linear([0.0], 1.0))
            deadline = time.monotonic() + 10
            while client.get(f"/v2/models/{later}/ready").status_code != 200:
                assert time.monotonic() < deadline, f"{later} did not load"
                time.sleep(0.02)
        log = server.log()
    typo = [line for line in log.splitlines() if "version_polcy" in line]
    assert len(typo) == 1, typo
    assert '"level":"warning"' in typo[0]
    assert f"{tmp_path}/typo/model.yaml: version_polcy: unknown key" in typo[0]
    assert "did you mean version_policy?" in typo[0]
    flat = [line for line in log.splitlines() if "is directly in the model folder" in line]
    assert len(flat) == 1, flat
    assert f"put it in {tmp_path}/flat/1/" in flat[0]
