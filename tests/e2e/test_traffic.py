"""Traffic policies against the real server: split proportions, sticky users (V2 REST, V1
REST, gRPC; a second server process agrees), the traffic API (GET, PUT, rollback), a canary
ramping to promoted, a failing canary rolling back by itself, bad policies."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton

from serval.testing import RunningServer, run_server
from tests.onnx_models import linear, remove_version, write_model
from tests.runtimes.builders import write_python_model

pytestmark = pytest.mark.e2e

BODY = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 1], "data": [0.0]}]}


def repository(root: Path, model_yaml: str, versions: int = 3) -> Path:
    """Model ``m`` whose version N answers N (y = 0 * x + N), with ``model_yaml``."""
    for version in range(1, versions + 1):
        write_model(root, "m", version, linear([0.0], float(version)))
    (root / "m" / "model.yaml").write_text(model_yaml)
    return root


def v2(client: httpx.Client, user: str | None = None, path: str = "/v2/models/m/infer") -> int:
    headers = {"x-user-id": user} if user is not None else {}
    response = client.post(path, json=BODY, headers=headers)
    assert response.status_code == 200, response.text
    doc = response.json()
    assert int(doc["outputs"][0]["data"][0]) == int(doc["model_version"])
    return int(doc["model_version"])


def v1(client: httpx.Client, user: str) -> int:
    response = client.post(
        "/v1/models/m:predict", json={"instances": [[0.0]]}, headers={"x-user-id": user}
    )
    assert response.status_code == 200, response.text
    return int(response.json()["predictions"][0][0])


def grpc_version(client: triton.InferenceServerClient, user: str | None = None) -> int:
    tensor = triton.InferInput("x", [1, 1], "FP32")
    tensor.set_data_from_numpy(np.zeros((1, 1), np.float32))
    headers = {"x-user-id": user} if user is not None else None
    result = client.infer("m", [tensor], headers=headers)
    version = int(result.get_response().model_version)
    assert int(result.as_numpy("y")[0][0]) == version
    return version


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"{what} within {timeout_s} s")


def within_binomial(count: int, n: int, p: float) -> bool:
    """Within 5 standard deviations of ``n * p`` (a false alarm about once in 3.5 million)."""
    return abs(count - n * p) <= 5 * (n * p * (1 - p)) ** 0.5


@pytest.fixture
def http(request: pytest.FixtureRequest) -> Iterator[Callable[[RunningServer], httpx.Client]]:
    clients: list[httpx.Client] = []

    def client(server: RunningServer) -> httpx.Client:
        clients.append(httpx.Client(base_url=server.http_url, timeout=30))
        return clients[-1]

    yield client
    for c in clients:
        c.close()


def test_routes_split_within_binomial_bounds_on_rest_and_grpc(
    tmp_path: Path, http: Callable[[RunningServer], httpx.Client]
) -> None:
    repo = repository(tmp_path, 'version_policy: all\ntraffic:\n  routes: {"1": 70, "2": 30}\n')
    with run_server(repo) as server:
        client = http(server)
        answered = [v2(client) for _ in range(600)]
        assert set(answered) == {1, 2}  # version 3, the latest, gets nothing
        assert within_binomial(answered.count(2), 600, 0.3)
        with triton.InferenceServerClient(server.grpc_address) as grpc_client:
            by_grpc = [grpc_version(grpc_client) for _ in range(300)]
            # A request naming its version bypasses the policy.
            tensor = triton.InferInput("x", [1, 1], "FP32")
            tensor.set_data_from_numpy(np.zeros((1, 1), np.float32))
            named = grpc_client.infer("m", [tensor], model_version="3")
            assert named.get_response().model_version == "3"
        assert set(by_grpc) == {1, 2}
        assert within_binomial(by_grpc.count(2), 300, 0.3)
        assert v2(client, path="/v2/models/m/versions/3/infer") == 3
        served = client.get("/v2/models/m/traffic").json()["served"]
        assert served["1"] + served["2"] == 900 and served["3"] == 2


def test_sticky_users_keep_their_version_everywhere_and_on_a_second_server(
    tmp_path: Path, http: Callable[[RunningServer], httpx.Client]
) -> None:
    repo = repository(
        tmp_path,
        'version_policy: all\ntraffic:\n  routes: {"1": 50, "2": 50}\n'
        "  sticky: {header: X-User-Id}\n",
    )
    users = [f"user-{i}" for i in range(60)]
    with run_server(repo) as server:
        client = http(server)
        first = {user: v2(client, user) for user in users}
        assert set(first.values()) == {1, 2}
        for user in users:
            assert v2(client, user) == first[user]
            assert v1(client, user) == first[user]
        with triton.InferenceServerClient(server.grpc_address) as grpc_client:
            for user in users[:20]:
                assert grpc_version(grpc_client, user) == first[user]
    with run_server(repo) as second:
        client = http(second)
        assert {user: v2(client, user) for user in users} == first


def test_put_get_and_rollback(
    tmp_path: Path, http: Callable[[RunningServer], httpx.Client]
) -> None:
    repo = repository(tmp_path, "version_policy: all\n")
    with run_server(repo) as server:
        client = http(server)
        assert client.get("/v2/models/m/traffic").json() == {
            "policy": None,
            "source": None,
            "served": {},
        }
        policy = {"routes": {"1": 1, "3": 1}, "shadow": {"versions": ["2"], "sample": 0.5}}
        put = client.put("/v2/models/m/traffic", json=policy)
        assert put.status_code == 200, put.text
        assert put.json()["source"] == "api"
        assert {v2(client) for _ in range(60)} == {1, 3}
        state = client.get("/v2/models/m/traffic").json()
        assert state["policy"] == {
            "routes": {"1": 1.0, "3": 1.0},
            "shadow": {"versions": ["2"], "sample": 0.5},
        }
        assert sum(state["served"].values()) == 60
        assert set(state["shadow"]) == {"2"}

        rolled = client.post("/v2/models/m/traffic/rollback")
        assert rolled.status_code == 200, rolled.text
        assert rolled.json()["rollback"] == {"to": "1", "reason": "manual"}  # a tie: the lower
        assert {v2(client) for _ in range(30)} == {1}
        rolled = client.post("/v2/models/m/traffic/rollback", json={"to": "3"})
        assert rolled.json()["rollback"] == {"to": "3", "reason": "manual"}
        assert {v2(client) for _ in range(30)} == {3}

        canary = {"canary": {"version": "3", "steps": [50], "step_s": 3600}}
        assert client.put("/v2/models/m/traffic", json=canary).status_code == 200
        rolled = client.post("/v2/models/m/traffic/rollback", json={})
        assert rolled.json()["canary"] == {
            "version": "3",
            "stable": "2",
            "percent": 0.0,
            "state": "rolled_back",
            "reason": "manual",
        }
        assert {v2(client) for _ in range(30)} == {2}


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "message"),
    [
        ("PUT", "/v2/models/m/traffic", {"routes": {"9": 1}}, 400, "traffic.routes.9: version 9"),
        ("PUT", "/v2/models/m/traffic", {"routes": {"x": 1}}, 400, "traffic.routes: route 'x'"),
        ("PUT", "/v2/models/m/traffic", {"bandit": {"versions": ["1"]}}, 400, "bandit.versions"),
        ("PUT", "/v2/models/m/traffic", {"rutes": {}}, 400, "traffic.rutes: unknown key (did you"),
        ("PUT", "/v2/models/m/traffic", [1], 400, "JSON object"),
        ("PUT", "/v2/models/nope/traffic", {"routes": {"1": 1}}, 404, "unknown model 'nope'"),
        ("GET", "/v2/models/nope/traffic", None, 404, "unknown model 'nope'"),
        ("POST", "/v2/models/m/traffic/rollback", {"to": "7"}, 400, "to: version 7 is not"),
        ("POST", "/v2/models/m/traffic/rollback", {"too": "1"}, 400, "too: unknown key"),
        ("POST", "/v2/models/m/traffic/rollback", None, 400, "no traffic policy to roll back"),
        ("POST", "/v2/models/nope/traffic/rollback", None, 404, "unknown model 'nope'"),
    ],
)
def test_bad_traffic_requests_get_clear_errors(
    traffic_server: RunningServer,
    method: str,
    path: str,
    body: Any,
    status: int,
    message: str,
) -> None:
    response = httpx.request(method, f"{traffic_server.http_url}{path}", json=body, timeout=30)
    assert response.status_code == status, response.text
    assert message in response.json()["error"]


@pytest.fixture(scope="module")
def traffic_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    repo = repository(tmp_path_factory.mktemp("repository"), "version_policy: all\n")
    with run_server(repo, grpc=False) as server:
        yield server


def test_a_bad_model_yaml_policy_is_reported_and_the_previous_one_kept(
    tmp_path: Path, http: Callable[[RunningServer], httpx.Client]
) -> None:
    served = "version_policy: {specific: [1, 2, 3]}\n"
    repo = repository(tmp_path, served + 'traffic:\n  routes: {"1": 1}\n')
    with run_server(repo, "--poll-interval-s", "0.2", grpc=False) as server:
        client = http(server)
        assert {v2(client) for _ in range(10)} == {1}
        (repo / "m" / "model.yaml").write_text(served + 'traffic:\n  routes: {"1": 1, "4": 1}\n')

        def reported() -> bool:
            index = client.post("/v2/repository/index").json()
            return any("traffic.routes.4: version 4 is not served" in r["reason"] for r in index)

        wait_for(reported, 10, "the index reports the bad policy")
        assert "version_policy serves 1, 2, 3" in server.log()
        assert {v2(client) for _ in range(10)} == {1}  # the previous policy
        assert client.get("/v2/models/m/traffic").json()["policy"] == {"routes": {"1": 1.0}}
        # Fixed, with a change of the traffic section only: applied, nothing reloaded.
        (repo / "m" / "model.yaml").write_text(served + 'traffic:\n  routes: {"2": 1}\n')
        wait_for(lambda: v2(client) == 2, 10, "the new policy applies")
        for version in (1, 2, 3):
            assert server.log().count(f"model m version {version} loading") == 1


def test_a_removed_version_hands_its_share_to_the_others(
    tmp_path: Path, http: Callable[[RunningServer], httpx.Client]
) -> None:
    repo = repository(tmp_path, 'version_policy: all\ntraffic:\n  routes: {"1": 50, "3": 50}\n')
    with run_server(repo, "--poll-interval-s", "0.2", grpc=False) as server:
        client = http(server)
        assert {v2(client) for _ in range(60)} == {1, 3}
        remove_version(repo, "m", 3)

        def reported() -> bool:
            state = client.get("/v2/models/m/traffic").json()
            return state.get("unavailable", {}).get("versions") == ["3"]

        wait_for(reported, 10, "the traffic state reports version 3 unavailable")
        assert {v2(client) for _ in range(30)} == {1}  # not 2, the latest: the policy's 1


def test_a_canary_with_one_second_steps_is_promoted(
    tmp_path: Path, http: Callable[[RunningServer], httpx.Client]
) -> None:
    repo = repository(
        tmp_path,
        "version_policy: all\ntraffic:\n  canary:\n    version: '3'\n"
        "    steps: [20, 60]\n    step_s: 1\n",
    )
    with run_server(repo, grpc=False) as server:
        client = http(server)

        def promoted() -> bool:
            v2(client)
            return client.get("/v2/models/m/traffic").json()["canary"]["state"] == "promoted"

        wait_for(promoted, 15, "the canary is promoted")
        canary = client.get("/v2/models/m/traffic").json()["canary"]
        assert (canary["percent"], canary["stable"]) == (100.0, "2")
        assert {v2(client) for _ in range(30)} == {3}
        metrics = client.get("/metrics").text
        assert 'serval_traffic_canary_percent{model="m",version="3"} 100.0' in metrics
        assert 'serval_traffic_canary_state{model="m",state="promoted",version="3"} 1.0' in metrics


ANSWERS = """
    from serval import ServingModel, TensorInfo


    class Answers(ServingModel):
        inputs = [TensorInfo("x", "FP32", [-1, 1])]
        outputs = [TensorInfo("y", "FP32", [-1, 1])]

        def predict(self, data):
            if {fails}:
                raise RuntimeError("version {version} is broken")
            return {{"y": data["x"] * 0 + {version}}}
"""


def test_a_canary_whose_version_raises_rolls_back_by_itself(
    tmp_path: Path, http: Callable[[RunningServer], httpx.Client]
) -> None:
    write_python_model(tmp_path / "m" / "1", ANSWERS.format(version=1, fails=False))
    write_python_model(tmp_path / "m" / "2", ANSWERS.format(version=2, fails=True))
    (tmp_path / "m" / "model.yaml").write_text(
        "version_policy: all\ntraffic:\n  canary:\n    version: '2'\n    steps: [50]\n"
        "    step_s: 3600\n    guardrails: {max_error_rate: 0.1, min_requests: 10}\n"
    )
    with run_server(tmp_path, grpc=False) as server:
        client = http(server)
        statuses: list[int] = []

        def rolled_back() -> bool:
            statuses.append(client.post("/v2/models/m/infer", json=BODY).status_code)
            return client.get("/v2/models/m/traffic").json()["canary"]["state"] == "rolled_back"

        wait_for(rolled_back, 10, "the canary rolls back")
        assert set(statuses) <= {200, 500}
        canary = client.get("/v2/models/m/traffic").json()["canary"]
        assert canary["reason"].startswith("guardrail max_error_rate: error rate 1 over 10")
        assert (canary["percent"], canary["stable"]) == (0.0, "1")
        for _ in range(50):
            assert v2(client) == 1  # every later request: the stable version, answered
        assert "canary version 2 rolled back: guardrail max_error_rate" in server.log()
        assert 'serval_traffic_rollbacks_total{model="m"} 1.0' in client.get("/metrics").text
