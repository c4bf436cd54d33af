"""A version that drains never holds up its successor: with a request still running on v1, v2
serves at once, and loading or unloading the model answers without waiting for the drain."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from serval.testing import run_server
from tests.runtimes.builders import write_python_model

pytestmark = pytest.mark.e2e

# Version N answers N. A request with a negative x runs until the test opens the gate.
GATED = """
    import time
    from pathlib import Path

    from serval import ServingModel, TensorInfo

    VERSION = {version}


    class Gated(ServingModel):
        inputs = [TensorInfo("x", "FP64", [-1])]
        outputs = [TensorInfo("y", "FP64", [-1])]

        def predict(self, data):
            x = data["x"]
            if (x < 0).any():
                gate = Path(self.parameters["gate"])
                Path(str(gate) + ".entered").touch()
                deadline = time.monotonic() + 60
                while not gate.exists() and time.monotonic() < deadline:
                    time.sleep(0.01)
            return {{"y": x * 0 + VERSION}}
"""


def body(x: float) -> dict[str, Any]:
    return {"inputs": [{"name": "x", "datatype": "FP64", "shape": [1], "data": [x]}]}


def wait_for(condition: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.02)
    raise AssertionError(f"{what} within {timeout_s} s")


def test_new_version_serves_while_a_request_runs_on_the_old_one(tmp_path: Path) -> None:
    repo, gate = tmp_path / "repo", tmp_path / "gate"
    write_python_model(repo / "m" / "1", GATED.format(version=1))
    (repo / "m" / "model.yaml").write_text(f"parameters:\n  gate: {gate}\n")
    slow: dict[str, Any] = {}

    def slow_request(url: str) -> None:
        try:
            slow["response"] = httpx.post(f"{url}/v2/models/m/infer", json=body(-1.0), timeout=60)
        except BaseException as exc:  # re-raised by the test after join
            slow["error"] = exc

    with run_server(
        repo,
        "--poll-interval-s",
        "0.2",
        "--exit-timeout-s",
        "60",  # the drain timeout: far longer than the test may wait
        "--inference-threads",
        "4",
        grpc=False,
    ) as server:
        thread = threading.Thread(target=slow_request, args=(server.http_url,))
        thread.start()
        try:
            wait_for(Path(f"{gate}.entered").exists, 10, "the slow request did not start")
            write_python_model(repo / "m" / "2", GATED.format(version=2))
            with httpx.Client(base_url=server.http_url, timeout=10) as http:

                def v2_answers() -> bool:
                    reply = http.post("/v2/models/m/infer", json=body(1.0))
                    return reply.status_code == 200 and reply.json()["model_version"] == "2"

                wait_for(v2_answers, 10, "version 2 did not serve")
                assert thread.is_alive(), "the request on version 1 is still running"
                rows = http.post("/v2/repository/index", json={}).json()
                states = {row["version"]: row["state"] for row in rows}
                assert states == {"1": "UNLOADING", "2": "READY"}
                # Neither waits for version 1's drain (60 s at most).
                started = time.monotonic()
                assert http.post("/v2/repository/models/m/load").status_code == 200
                assert http.post("/v2/repository/models/m/unload").status_code == 200
                assert time.monotonic() - started < 8
                assert thread.is_alive()
        finally:
            gate.touch()
            thread.join(30)
        if "error" in slow:
            raise slow["error"]
        response = slow["response"]
        assert response.status_code == 200, response.text
        assert (response.json()["model_version"], response.json()["outputs"][0]["data"]) == (
            "1",
            [1.0],
        )
        wait_for(lambda: "model m version 1 unloaded" in server.log(), 10, "v1 did not unload")
