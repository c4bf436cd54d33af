"""Three replicas on three hosts of this machine (deploy/local-cluster: a network namespace and
veth pair each), HAProxy in front, the machine's Redis and PostgreSQL shared: sticky A/B
identical whichever replica answers, bandit rewards given to one replica steering the others,
one Redis prediction cache, an evaluation counting every replica's predictions and ground
truth, a rolling restart under load with no failed request, and a SIGKILL costing at most the
requests in flight."""

from __future__ import annotations

import importlib.util
import os
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import numpy as np
import pytest
import yaml

from tests.e2e.test_caching import COUNTED
from tests.e2e.test_evaluation import repository as classifier_repository
from tests.onnx_models import linear, write_model
from tests.redis_keys import redis_prefix
from tests.runtimes.builders import version_folder, write_python_model
from tests.storage.evaluation_stores import postgresql_schema

pytestmark = pytest.mark.e2e

REDIS = "redis://127.0.0.1:6379/0"
SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "local-cluster" / "local_cluster.py"
ROW = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 1], "data": [0.0]}]}
SLOW_DELAY_S = 0.05


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("local_cluster", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["local_cluster"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def wait_for(condition: Callable[[], bool], what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def build_repository(root: Path) -> Path:
    """ab: sticky 50/50 between versions 1 and 2 (version N answers N); bandit: a Thompson
    bandit over the same; cached: a Python model with a Redis cache that records each call in
    $CALLS_FILE; slow: 50 ms a request; classifier: logged to the evaluation store."""
    for name in ("ab", "bandit"):
        for version in (1, 2):
            write_model(root, name, version, linear([0.0], float(version)))
    (root / "ab" / "model.yaml").write_text(
        yaml.safe_dump(
            {
                "version_policy": "all",
                "traffic": {"routes": {"1": 50, "2": 50}, "sticky": {"header": "X-User-Id"}},
            }
        )
    )
    (root / "bandit" / "model.yaml").write_text(
        yaml.safe_dump(
            {
                "version_policy": "all",
                "traffic": {"bandit": {"versions": ["1", "2"], "algorithm": "thompson"}},
            }
        )
    )
    write_python_model(version_folder(root, "cached"), COUNTED.format(version=1, delay=0))
    (root / "cached" / "model.yaml").write_text(
        yaml.safe_dump({"cache": {"backend": "redis", "ttl_s": 120}})
    )
    write_python_model(version_folder(root, "slow"), COUNTED.format(version=7, delay=SLOW_DELAY_S))
    classifier_repository(
        root,
        "  log: {sample_rate: 1.0}\n  prediction: label\n"
        "  quality: {metric: accuracy, window: 600}\n",
    )
    return root


@dataclass
class Cluster:
    handle: Any  # local_cluster.LocalCluster
    calls_file: Path
    clients: list[httpx.Client] = field(default_factory=list)

    def client(self, url: str) -> httpx.Client:
        self.clients.append(httpx.Client(base_url=url, timeout=60))
        return self.clients[-1]

    @property
    def balanced(self) -> httpx.Client:
        """Through the load balancer."""
        return self.client(self.handle.url)

    def replica(self, index: int) -> httpx.Client:
        """Straight to replica ``index``."""
        return self.client(self.handle.members[index].url)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    local_cluster = load_script()
    root = tmp_path_factory.mktemp("replicas")
    repo = build_repository(root / "repo")
    calls_file = root / "calls"
    with (
        redis_prefix(REDIS) as prefix,
        postgresql_schema() as store,
        local_cluster.LocalCluster(
            repo,
            replicas=3,
            redis_url=REDIS,
            store=store,
            extra_args=("--redis-prefix", prefix, "--evaluation-interval-s", "3600"),
            env={"CALLS_FILE": str(calls_file)},
        ) as handle,
    ):
        kit = Cluster(handle, calls_file)
        yield kit
        for client in kit.clients:
            client.close()


def version_of(client: httpx.Client, model: str, user: str | None = None) -> tuple[int, str]:
    headers = {"x-user-id": user} if user is not None else {}
    reply = client.post(f"/v2/models/{model}/infer", json=ROW, headers=headers)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert int(body["outputs"][0]["data"][0]) == int(body["model_version"])
    return int(body["model_version"]), body["id"]


def test_the_replicas_are_hosts_of_their_own(cluster: Cluster) -> None:
    handle = cluster.handle
    # Root (CI) gets namespaces; elsewhere the script falls back to 127.0.0.2-4 and says why.
    assert handle.isolation == "netns" or os.geteuid() != 0, handle.isolation
    addresses = {replica.address for replica in handle.members}
    assert len(addresses) == 3
    if handle.isolation == "netns":
        assert not any(address.startswith("127.") for address in addresses)
    assert handle.backends_up() == 3
    # Requests through the load balancer reach all three (round robin).
    balanced = cluster.balanced
    before = [replica_requests(cluster.replica(i)) for i in range(3)]
    for _ in range(30):
        assert balanced.get("/v2/health/ready").status_code == 200
        version_of(balanced, "ab")
    after = [replica_requests(cluster.replica(i)) for i in range(3)]
    assert all(b > a for a, b in zip(before, after, strict=True)), (before, after)


def replica_requests(client: httpx.Client) -> float:
    """Successful inference requests of model ``ab`` this replica answered."""
    stats = client.get("/v2/models/ab/stats").json()["model_stats"]
    return float(sum(one["inference_stats"]["success"]["count"] for one in stats))


def test_sticky_assignment_is_the_same_whichever_replica_answers(cluster: Cluster) -> None:
    users = [f"user-{i}" for i in range(40)]
    balanced = cluster.balanced
    first = {user: version_of(balanced, "ab", user)[0] for user in users}
    assert set(first.values()) == {1, 2}
    for index in range(3):
        replica = cluster.replica(index)
        assert {user: version_of(replica, "ab", user)[0] for user in users} == first
    assert {user: version_of(balanced, "ab", user)[0] for user in users} == first


def bandit_arms(client: httpx.Client) -> dict[str, Any]:
    arms: dict[str, Any] = client.get("/v2/models/bandit/traffic").json()["bandit"]
    return arms


def test_rewards_given_through_one_replica_steer_the_others(cluster: Cluster) -> None:
    # Feedback is matched by request id in the replica that answered (its answer ledger is
    # in memory), so the rewards go to the replica that made the predictions; the arms'
    # totals are what Redis shares.
    teacher = cluster.replica(0)
    for _ in range(150):
        version, request_id = version_of(teacher, "bandit")
        reward = 1.0 if version == 2 else 0.0
        answer = teacher.post(
            "/v2/models/bandit/feedback", json={"id": request_id, "reward": reward}
        )
        assert answer.json() == {"accepted": 1, "matched": 1}
    learners = [cluster.replica(1), cluster.replica(2)]
    for learner in learners:
        wait_for(
            lambda learner=learner: (
                bandit_arms(learner)["2"]["mean_reward"] == 1.0
                and bandit_arms(learner)["1"]["mean_reward"] in (0.0, None)
            ),
            "the rewards to reach the other replicas",
        )
    for learner in learners:
        choices = Counter(version_of(learner, "bandit")[0] for _ in range(60))
        # Before any reward each arm had half; now the rewarded arm takes nearly all.
        assert choices[2] >= 50, choices


def calls(path: Path, version: str = "1") -> int:
    return path.read_text().split().count(version) if path.exists() else 0


def test_the_redis_prediction_cache_is_shared(cluster: Cluster) -> None:
    body = {"inputs": [{"name": "x", "datatype": "FP64", "shape": [2], "data": [3.0, 4.0]}]}
    before = calls(cluster.calls_file)
    answers = []
    for index in range(3):
        reply = cluster.replica(index).post("/v2/models/cached/infer", json=body)
        assert reply.status_code == 200, reply.text
        answers.append(reply.json()["outputs"][0]["data"])
    reply = cluster.balanced.post("/v2/models/cached/infer", json=body)
    assert reply.status_code == 200
    assert answers == [[3.0, 4.0]] * 3 and reply.json()["outputs"][0]["data"] == [3.0, 4.0]
    assert calls(cluster.calls_file) == before + 1  # replica 0 ran it; the others hit


def evaluated(client: httpx.Client) -> dict[str, Any]:
    reply = client.get("/v2/models/classifier/evaluation")
    assert reply.status_code == 200, reply.text
    versions: dict[str, Any] = reply.json()["versions"]
    return versions.get("1", {})


def log_drained(client: httpx.Client) -> bool:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith("serval_prediction_log_queued"):
            return float(line.rsplit(" ", 1)[1]) == 0.0
    return False


def test_the_evaluation_counts_every_replica_s_predictions_and_ground_truth(
    cluster: Cluster,
) -> None:
    balanced = cluster.balanced
    rows = np.random.default_rng(7).normal(size=(2, 4)).astype(np.float32)
    body = {
        "inputs": [
            {"name": "features", "datatype": "FP32", "shape": [2, 4]}
            | {"data": rows.ravel().tolist()}
        ]
    }
    labels: dict[str, list[int]] = {}
    for index in range(30):
        reply = balanced.post("/v2/models/classifier/infer", json={"id": f"ev-{index}", **body})
        assert reply.status_code == 200, reply.text
        labels[f"ev-{index}"] = next(
            o["data"] for o in reply.json()["outputs"] if o["name"] == "label"
        )
    for index in range(3):
        wait_for(lambda index=index: log_drained(cluster.replica(index)), "the logs to drain")
    # Round robin: every replica logged some of the 30.
    assert evaluated(balanced)["logged"] == 30
    items = [{"id": key, "ground_truth": value} for key, value in labels.items()]
    for start in range(0, 30, 10):  # three requests: each lands on another replica
        reply = balanced.post("/v2/models/classifier/feedback", json={"items": items[start:][:10]})
        assert reply.status_code == 200, reply.text
        assert reply.json()["accepted"] == 10
    wait_for(lambda: evaluated(balanced).get("labelled") == 30, "30 labelled")
    for index in range(3):
        result = evaluated(cluster.replica(index))
        assert result["logged"] == 30 and result["labelled"] == 30
        assert result["quality"]["value"] == 1.0


@dataclass
class Load:
    """Client threads sending requests through the load balancer until stopped."""

    url: str
    threads: int = 6
    ok: int = 0
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _workers: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _run(self, index: int) -> None:
        body = {"inputs": [{"name": "x", "datatype": "FP64", "shape": [1], "data": [1.0]}]}
        model = "slow" if index % 2 else "ab"
        with httpx.Client(base_url=self.url, timeout=60) as client:
            while not self._stop.is_set():
                try:
                    reply = client.post(
                        f"/v2/models/{model}/infer", json=body if model == "slow" else ROW
                    )
                    failed = (
                        None if reply.status_code == 200 else f"{reply.status_code} {reply.text}"
                    )
                except httpx.HTTPError as error:
                    failed = repr(error)
                with self._lock:
                    if failed is None:
                        self.ok += 1
                    else:
                        self.failures.append(failed)

    def __enter__(self) -> Load:
        for index in range(self.threads):
            worker = threading.Thread(target=self._run, args=(index,), daemon=True)
            worker.start()
            self._workers.append(worker)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.join(90)

    def wait_ok(self, count: int) -> None:
        target = self.ok + count
        wait_for(lambda: self.ok >= target, f"{count} more answers")


def test_a_rolling_restart_under_load_fails_no_request(cluster: Cluster) -> None:
    handle = cluster.handle
    with Load(handle.url) as load:
        load.wait_ok(50)
        for index in range(3):
            assert handle.stop_replica(index, signal.SIGTERM) == 0, handle.members[index].log()
            load.wait_ok(30)  # two replicas serve meanwhile
            handle.start_replica(index)
            handle.wait_routed(3)
            load.wait_ok(30)
    print(f"rolling restart: {load.ok} answers, {len(load.failures)} failures")
    assert load.failures == [], load.failures[:5]
    assert load.ok > 200
    assert all(replica.restarts == 1 for replica in handle.members)


def test_a_replica_killed_costs_at_most_its_requests_in_flight(cluster: Cluster) -> None:
    handle = cluster.handle
    with Load(handle.url) as load:
        load.wait_ok(50)
        assert handle.stop_replica(1, signal.SIGKILL) == -signal.SIGKILL
        load.wait_ok(50)
        handle.wait_routed(2)
        handle.start_replica(1)
        handle.wait_routed(3)
        load.wait_ok(50)
    # At most one request per client thread can have been in flight on the killed replica.
    print(f"SIGKILL: {load.ok} answers, {len(load.failures)} failures")
    assert len(load.failures) <= load.threads, load.failures
