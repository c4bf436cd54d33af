"""A hung or hostile Python model never takes the server or other models down (issue 11,
item 5): its calls are bounded and time out, ``SystemExit`` is an error of the model, and
SIGTERM exits on time with a call still hanging."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from serval.testing import run_server
from tests.runtimes.builders import onnx_linear, python_model, version_folder, write_python_model

pytestmark = pytest.mark.e2e

HUNG = """
    import time
    from pathlib import Path

    from serval import ServingModel, TensorInfo


    class Hung(ServingModel):
        inputs = [TensorInfo("x", "FP64", [-1])]
        outputs = [TensorInfo("y", "FP64", [-1])]

        def predict(self, data):
            (self.path / "started").touch()
            time.sleep(float(self.parameters.get("sleep_s", 60)))
            return {"y": data["x"]}
"""

EXITS = """
    from serval import ServingModel, TensorInfo

    {at_import}

    class Exits(ServingModel):
        inputs = [TensorInfo("x", "FP64", [-1])]
        outputs = [TensorInfo("y", "FP64", [-1])]

        def load(self):
            {in_load}

        def predict(self, data):
            {in_predict}
            return {{"y": data["x"]}}
"""

X = {"inputs": [{"name": "x", "datatype": "FP64", "shape": [1], "data": [1.0]}]}
ROWS = {"inputs": [{"name": "input", "datatype": "FP64", "shape": [1, 4], "data": [1.0] * 4}]}
LINEAR = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1.0] * 4}]}


def _exits(repo: Path, name: str, **code: str) -> None:
    parts = {"at_import": "", "in_load": "pass", "in_predict": "pass", **code}
    write_python_model(version_folder(repo, name), EXITS.format(**parts))


def _in_threads(calls: list[Any]) -> tuple[list[threading.Thread], list[Any], list[BaseException]]:
    results: list[Any] = []
    errors: list[BaseException] = []

    def run(call: Any) -> None:
        try:
            results.append(call())
        except BaseException as exc:  # re-raised by the test after join
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
    return threads, results, errors


def wait_for(predicate: Any, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def test_hung_model_leaves_the_others_alone(tmp_path: Path) -> None:
    write_python_model(version_folder(tmp_path, "hung"), HUNG)
    (tmp_path / "hung" / "model.yaml").write_text(
        "parameters: {sleep_s: 20}\nruntime_options: {timeout_s: 1.5}\n"
    )
    onnx_linear(tmp_path, "linear")
    python_model(tmp_path, "isolated")
    (tmp_path / "isolated" / "model.yaml").write_text("runtime_options: {isolation: process}\n")
    with (
        run_server(tmp_path, "--inference-threads", "2", grpc=False) as server,
        httpx.Client(base_url=server.http_url, timeout=30) as http,
    ):
        url = f"{server.http_url}/v2/models/hung/infer"
        threads, results, errors = _in_threads(
            [lambda: httpx.post(url, json=X, timeout=30) for _ in range(3)]
        )
        wait_for((tmp_path / "hung" / "1" / "started").exists)
        began = time.monotonic()
        for _ in range(3):  # while it hangs, the others answer at once
            started = time.monotonic()
            assert http.post("/v2/models/linear/infer", json=LINEAR).status_code == 200
            assert http.post("/v2/models/isolated/infer", json=ROWS).status_code == 200
            assert http.get("/v2/health/live").status_code == 200
            assert time.monotonic() - started < 1.0
        for thread in threads:
            thread.join(10)
        if errors:
            raise errors[0]
        # Each of its own requests gets a 504 after timeout_s (queued ones included).
        assert [r.status_code for r in results] == [504, 504, 504], [r.text for r in results]
        assert "timeout_s (1.5 s)" in results[0].json()["error"]
        assert time.monotonic() - began < 5
        assert "abandoned" in server.log()
        # Its hung call holds its slot: a new request waits, then times out too.
        late = http.post("/v2/models/hung/infer", json=X)
        assert late.status_code == 504
        assert http.post("/v2/models/linear/infer", json=LINEAR).status_code == 200


def test_system_exit_is_an_error_of_the_model(tmp_path: Path) -> None:
    _exits(tmp_path, "at_import", at_import="raise SystemExit(3)")
    _exits(tmp_path, "in_load", in_load="raise SystemExit('bye')")
    _exits(tmp_path, "in_predict", in_predict="raise SystemExit(4)")
    (tmp_path / "interrupt" / "1").mkdir(parents=True)
    _exits(tmp_path, "interrupt", in_load="raise KeyboardInterrupt")
    with (
        run_server(tmp_path, grpc=False, wait_ready=False) as server,
        httpx.Client(base_url=server.http_url, timeout=30) as http,
    ):
        wait_for(lambda: http.get("/v2/models/in_predict/ready").status_code == 200)

        def reasons() -> dict[str, str]:
            index = http.post("/v2/repository/index").json()
            return {row["name"]: row.get("reason", "") for row in index}

        wait_for(lambda: all(reasons().get(n) for n in ("at_import", "in_load", "interrupt")))
        found = reasons()
        assert "SystemExit: 3" in found["at_import"]
        assert "SystemExit: bye" in found["in_load"]
        assert "KeyboardInterrupt" in found["interrupt"]
        with httpx.Client(base_url=server.http_url, timeout=30) as same_connection:
            failed = same_connection.post("/v2/models/in_predict/infer", json=X)
            assert failed.status_code == 500
            assert failed.headers["content-type"] == "application/json"
            assert "'in_predict'" in failed.json()["error"]
            assert "SystemExit" in failed.json()["error"]
            # The keep-alive connection still serves.
            assert same_connection.get("/v2/health/live").status_code == 200
        assert server.process.poll() is None


def test_sigterm_exits_on_time_with_a_hung_call(tmp_path: Path) -> None:
    write_python_model(version_folder(tmp_path, "hung"), HUNG)
    with run_server(tmp_path, "--exit-timeout-s", "2", grpc=False) as server:
        url = f"{server.http_url}/v2/models/hung/infer"
        threads, results, errors = _in_threads([lambda: httpx.post(url, json=X, timeout=60)])
        wait_for((tmp_path / "hung" / "1" / "started").exists)
        stopped = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        server.process.wait(30)
        took = time.monotonic() - stopped
        threads[0].join(10)
        if errors:
            raise errors[0]
        assert took < 2 + 4, f"exited {took:.1f} s after SIGTERM:\n{server.log()}"
        assert server.process.returncode == 0
        cut_off = results[0]
        assert cut_off.status_code == 503
        assert "shutting down" in cut_off.json()["error"]
        assert "thread(s) still running" in server.log()


COUNTING = """
    import time

    from serval import ServingModel, TensorInfo


    class Counting(ServingModel):
        inputs = [TensorInfo("x", "FP64", [-1])]
        outputs = [TensorInfo("y", "FP64", [-1])]

        def predict(self, data):
            with open(self.path / "calls", "a") as calls:
                calls.write("call\\n")
            time.sleep(2)
            return {"y": data["x"]}
"""


def test_a_request_whose_client_left_never_runs(tmp_path: Path) -> None:
    write_python_model(version_folder(tmp_path, "slow"), COUNTING)
    (tmp_path / "slow" / "model.yaml").write_text("concurrency: {limit: 1}\n")
    calls = tmp_path / "slow" / "1" / "calls"
    with run_server(tmp_path, "--inference-threads", "4", grpc=False) as server:
        url = f"{server.http_url}/v2/models/slow/infer"
        threads, results, errors = _in_threads([lambda: httpx.post(url, json=X, timeout=30)])
        wait_for(calls.exists)
        with pytest.raises(httpx.ReadTimeout):  # waits for the slot, then its client leaves
            httpx.post(url, json=X, timeout=0.5)
        threads[0].join(10)
        if errors:
            raise errors[0]
        assert results[0].status_code == 200
        assert httpx.post(url, json=X, timeout=30).status_code == 200
        assert calls.read_text().count("call") == 2  # the first and the last, not the gone one
