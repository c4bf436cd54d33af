"""A pipeline and the models it calls, against the real server: they come and go (poll mode),
change version, batch concurrent requests together, and fail (400, 500, 504 naming the
step)."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from serval.testing import run_server
from tests.onnx_models import affine, classifier, remove_version, write_model

pytestmark = pytest.mark.e2e

POLL = ("--poll-interval-s", "0.2", "--strict-readiness", "false")
PIPELINE = """
pipeline:
  steps:
    - {name: scale, model: scaler, inputs: {x: inputs.x}}
    - {name: clf, model: classifier, inputs: {x: scale.y}}
  outputs: {scaled: scale.y, label: clf.label}
"""


def wait_for(condition: Callable[[], bool], what: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout_s:g} s")
        time.sleep(0.05)


def infer(http: httpx.Client, x: list[list[float]]) -> httpx.Response:
    rows = np.asarray(x, np.float32)
    body = {
        "inputs": [
            {
                "name": "x",
                "datatype": "FP32",
                "shape": list(rows.shape),
                "data": rows.ravel().tolist(),
            }
        ],
        "outputs": [{"name": "scaled"}],
    }
    return http.post("/v2/models/p/infer", json=body)


def scaled(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    return response.json()["outputs"][0]["data"]


def reason(http: httpx.Client, name: str) -> str:
    rows = http.post("/v2/repository/index", json={}).json()
    return " ".join(row.get("reason", "") for row in rows if row["name"] == name)


def ready(http: httpx.Client, name: str) -> bool:
    return http.get(f"/v2/models/{name}/ready").status_code == 200


def test_a_pipeline_waits_for_its_steps_follows_them_away_and_back_and_to_new_versions(
    tmp_path: Path,
) -> None:
    write_model(tmp_path, "classifier", 1, classifier())
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "model.yaml").write_text(PIPELINE)
    with (
        run_server(tmp_path, *POLL, grpc=False) as server,
        httpx.Client(base_url=server.http_url, timeout=10) as http,
    ):
        # The model a step calls is not there: not ready, and the index says which step waits.
        assert not ready(http, "p")
        assert "waiting for model 'scaler' (step 'scale')" in reason(http, "p")
        # It appears: the pipeline loads.
        write_model(tmp_path, "scaler", 1, affine(2.0, [0.0, 0.0]))
        wait_for(lambda: ready(http, "p"), "the pipeline became ready")
        assert scaled(infer(http, [[1.0, 2.0]])) == [2.0, 4.0]
        # A new version of the step model: the pipeline's answers follow it.
        write_model(tmp_path, "scaler", 2, affine(3.0, [0.0, 0.0]))
        wait_for(
            lambda: scaled(infer(http, [[1.0, 2.0]])) == [3.0, 6.0], "the new version answered"
        )
        # The step model goes away: not ready, and a request is refused naming the step.
        remove_version(tmp_path, "scaler", 1)
        remove_version(tmp_path, "scaler", 2)
        wait_for(lambda: not ready(http, "p"), "the pipeline became not ready")
        response = infer(http, [[1.0, 2.0]])
        assert response.status_code == 503
        assert (
            "pipeline 'p' step 'scale' (model 'scaler') is not available"
            in (response.json()["error"])
        )
        assert "waiting for model 'scaler' (step 'scale')" in reason(http, "p")
        not_ready = http.get("/v2/models/p/ready")
        assert not_ready.status_code == 503
        assert "waiting for model 'scaler' (step 'scale')" in not_ready.json()["error"]
        # It comes back: ready again.
        write_model(tmp_path, "scaler", 3, affine(4.0, [0.0, 0.0]))
        wait_for(lambda: ready(http, "p"), "the pipeline became ready again")
        assert scaled(infer(http, [[1.0, 2.0]])) == [4.0, 8.0]


def test_concurrent_requests_through_a_batching_step_get_their_own_rows(tmp_path: Path) -> None:
    write_model(tmp_path, "scaler", 1, affine(2.0, [1.0, -1.0]))
    (tmp_path / "scaler" / "model.yaml").write_text(
        "max_batch_size: 32\ndynamic_batching: {max_queue_delay_us: 5000}\n"
    )
    write_model(tmp_path, "classifier", 1, classifier())
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "model.yaml").write_text(PIPELINE)

    def client(http: httpx.Client, worker: int) -> None:
        for request in range(20):
            # Each request has its own values and its own number of rows.
            rows = 1 + (worker + request) % 3
            x = [[worker * 100.0 + request, float(row)] for row in range(rows)]
            expected = (np.asarray(x, np.float32) * 2 + [1.0, -1.0]).tolist()
            assert scaled(infer(http, x)) == np.ravel(expected).tolist()

    with (
        run_server(tmp_path, grpc=False) as server,
        httpx.Client(base_url=server.http_url, timeout=30) as http,
        ThreadPoolExecutor(16) as pool,
    ):
        for future in [pool.submit(client, http, worker) for worker in range(16)]:
            future.result()
        stats = http.get("/v2/models/scaler/stats").json()["model_stats"][0]
        assert stats["inference_stats"]["success"]["count"] == 16 * 20


JUDGE = """
import time

from serval import InvalidInputError, ServingModel, TensorInfo


class Judge(ServingModel):
    inputs = [TensorInfo("x", "FP32", (-1, 2))]
    outputs = [TensorInfo("y", "FP32", (-1, 2))]

    def predict(self, data):
        x = data["x"]
        if (x < -100).any():
            raise InvalidInputError("values below -100 are not allowed")
        if (x > 100).any():
            raise ZeroDivisionError("the judge crashed")
        if (x == 50).any():
            time.sleep(1.0)
        return {"y": x}
"""


def test_a_step_s_errors_keep_their_status_and_name_the_step(tmp_path: Path) -> None:
    write_model(tmp_path, "scaler", 1, affine(1.0, [0.0, 0.0]))
    (tmp_path / "judge" / "1").mkdir(parents=True)
    (tmp_path / "judge" / "1" / "model.py").write_text(JUDGE)
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "model.yaml").write_text(
        "pipeline:\n"
        "  steps:\n"
        "    - {name: scale, model: scaler, inputs: {x: inputs.x}}\n"
        "    - {name: check, model: judge, inputs: {x: scale.y}}\n"
        "  outputs: {scaled: check.y}\n"
    )
    with (
        run_server(tmp_path, grpc=False) as server,
        httpx.Client(base_url=server.http_url, timeout=10) as http,
    ):
        step = "pipeline 'p' step 'check' (model 'judge')"
        refused = infer(http, [[-500.0, 0.0]])
        assert refused.status_code == 400, refused.text
        assert f"{step}: values below -100 are not allowed" in refused.json()["error"]
        crashed = infer(http, [[500.0, 0.0]])
        assert crashed.status_code == 500, crashed.text
        assert f"{step} failed" in crashed.json()["error"]
        assert "ZeroDivisionError" in crashed.json()["error"]
        body = {
            "inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 2], "data": [50.0, 0.0]}],
            "parameters": {"timeout": 200_000},  # microseconds
        }
        late = http.post("/v2/models/p/infer", json=body)
        assert late.status_code == 504, late.text
        # The server goes on serving.
        assert http.get("/v2/health/live").status_code == 200
        assert scaled(infer(http, [[1.0, 2.0]])) == [1.0, 2.0]


CALLS = """
pipeline:
  steps:
    - {{name: ask, model: {other}, inputs: {{x: inputs.x}}}}
  outputs: {{y: ask.y}}
"""


def test_composites_that_call_each_other_say_so_and_recover_when_the_cycle_is_broken(
    tmp_path: Path,
) -> None:
    write_model(tmp_path, "scaler", 1, affine(2.0, [1.0, -1.0]))
    for name, other in (("a", "b"), ("b", "a")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "model.yaml").write_text(CALLS.format(other=other))
    with (
        run_server(tmp_path, *POLL, grpc=False) as server,
        httpx.Client(base_url=server.http_url, timeout=10) as http,
    ):
        wait_for(lambda: "a -> b -> a" in reason(http, "a"), "a's reason naming the cycle")
        wait_for(lambda: "b -> a -> b" in reason(http, "b"), "b's reason naming the cycle")
        assert not ready(http, "a")
        assert not ready(http, "b")
        assert "in a cycle" in http.get("/v2/models/a/ready").text
        # b calls the scaler instead: the cycle is broken, b loads, then a.
        (tmp_path / "b" / "model.yaml").write_text(CALLS.format(other="scaler"))
        wait_for(lambda: ready(http, "b") and ready(http, "a"), "a and b ready")
        assert "cycle" not in reason(http, "a") + reason(http, "b")
        answer = http.post(
            "/v2/models/a/infer",
            json={"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 2], "data": [1, 2]}]},
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["outputs"][0]["data"] == [3.0, 3.0]
        # An edit that closes the cycle while both serve: b's new load never comes (its calls
        # would go round a and b until a deadline); b keeps its last good load, both say why.
        (tmp_path / "b" / "model.yaml").write_text(CALLS.format(other="a"))
        wait_for(lambda: "b -> a -> b" in reason(http, "b"), "b's reason naming the cycle")
        wait_for(lambda: "a -> b -> a" in reason(http, "a"), "a's reason naming the cycle")
        assert not ready(http, "a")
        again = http.post(
            "/v2/models/a/infer",
            json={"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 2], "data": [1, 2]}]},
        )
        assert again.status_code == 200, again.text  # through b's last good load
