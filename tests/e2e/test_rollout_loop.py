"""Rollout end to end, across both halves of it: bandits learning from the feedback API, and
shadow versions configured in model.yaml whose answers are compared and never returned."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from serval.testing import RunningServer, run_server
from tests.onnx_models import linear, write_model

pytestmark = pytest.mark.e2e

BODY = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 1], "data": [0.5]}]}


def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def repository(root: Path, versions: int, spec: dict[str, object]) -> Path:
    """Model ``m`` whose version N answers y = N whatever the input."""
    for version in range(1, versions + 1):
        write_model(root, "m", version, linear([0.0], float(version)))
    (root / "m" / "model.yaml").write_text(yaml.safe_dump(spec))
    return root


def infer(http: httpx.Client) -> tuple[str, str]:
    """One request: (the version that answered, the request id)."""
    response = http.post("/v2/models/m/infer", json=BODY)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["outputs"][0]["data"][0] == float(body["model_version"])
    assert response.headers["x-model-version"] == body["model_version"]
    return body["model_version"], body["id"]


@pytest.fixture
def bandit_server(tmp_path: Path) -> Iterator[RunningServer]:
    spec = {
        "version_policy": "all",
        "traffic": {"bandit": {"versions": ["1", "2"], "algorithm": "thompson"}},
    }
    with run_server(repository(tmp_path, 2, spec), grpc=False) as server:
        yield server


def test_a_bandit_sends_most_late_traffic_to_the_rewarded_version(
    bandit_server: RunningServer,
) -> None:
    late: Counter[str] = Counter()
    with httpx.Client(base_url=bandit_server.http_url, timeout=30) as http:
        for round_ in range(300):
            version, request_id = infer(http)
            if round_ >= 200:
                late[version] += 1
            reward = 1.0 if version == "2" else 0.0
            answer = http.post("/v2/models/m/feedback", json={"id": request_id, "reward": reward})
            assert answer.status_code == 200, answer.text
            assert answer.json() == {"accepted": 1, "matched": 1}
        traffic = http.get("/v2/models/m/traffic").json()
    # Thompson sampling over Beta(1 + wins, 1 + losses): after 200 rewards the losing arm is
    # drawn above the winning one with a vanishing probability.
    assert late["2"] >= 90, late
    arms = traffic["bandit"]
    assert arms["2"]["mean_reward"] == 1.0
    assert arms["1"]["mean_reward"] in (0.0, None)
    assert arms["1"]["pulls"] + arms["2"]["pulls"] == 300


def test_feedback_for_unknown_ids_is_accepted_unmatched(bandit_server: RunningServer) -> None:
    with httpx.Client(base_url=bandit_server.http_url, timeout=30) as http:
        _, request_id = infer(http)
        items = [{"id": request_id, "reward": 1.0}, {"id": "never-seen", "reward": 0.0}]
        answer = http.post("/v2/models/m/feedback", json={"items": items})
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"accepted": 2, "matched": 1}


RAISING_MODEL = """
from serval import ServingModel, TensorInfo


class Broken(ServingModel):
    inputs = [TensorInfo("x", "FP32", [-1, 1])]
    outputs = [TensorInfo("y", "FP32", [-1, 1])]

    def predict(self, data):
        raise RuntimeError("the shadow version is broken")
"""


@pytest.mark.parametrize("broken", [False, True], ids=["comparing", "raising"])
def test_shadow_answers_are_compared_and_never_returned(tmp_path: Path, broken: bool) -> None:
    spec = {
        "version_policy": "all",
        "traffic": {"routes": {"1": 1}, "shadow": {"versions": ["2"], "sample": 1.0}},
    }
    root = repository(tmp_path, 2, spec)
    if broken:
        (root / "m" / "2" / "model.onnx").unlink()
        (root / "m" / "2" / "model.py").write_text(RAISING_MODEL)
    requests = 40
    with (
        run_server(root, grpc=False) as server,
        httpx.Client(base_url=server.http_url, timeout=30) as http,
    ):
        for _ in range(requests):
            assert infer(http)[0] == "1"

        def shadow() -> dict[str, object]:
            return http.get("/v2/models/m/traffic").json()["shadow"]["2"]

        wait_until(lambda: shadow()["requests"] + shadow()["dropped"] == requests, "shadows")
        counts = shadow()
        if broken:
            assert counts["errors"] == counts["requests"] > 0
        else:
            assert counts["errors"] == 0
            assert counts["requests"] > 0
            assert counts["mean_abs_diff"] == pytest.approx(1.0)  # 2.0 against 1.0
        served = http.get("/v2/models/m/traffic").json()["served"]
        assert served == {"1": requests}
