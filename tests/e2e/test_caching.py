"""Caching, online features and precomputed answers against the real server and the machine's
real Redis (127.0.0.1:6379, a key prefix of each test's own): hits that skip the model,
versions that never share entries, coalesced misses, replicas sharing one cache, features
from hashes the test wrote, answers `serval batch --to` wrote, and a Redis that is not there.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnxruntime as ort
import pytest
import redis
import yaml

from serval.testing import free_port, run_server
from tests.onnx_models import linear, write_model
from tests.redis_keys import redis_prefix
from tests.runtimes.builders import version_folder, write_python_model

pytestmark = pytest.mark.e2e

URL = "redis://127.0.0.1:6379/0"

# y = x * SCALE; each call appends a line to $CALLS_FILE (outside the repository: a file in a
# version folder would change its fingerprint and reload it).
COUNTED = """
    import os
    import time

    from serval import ServingModel, TensorInfo


    class Counted(ServingModel):
        inputs = [TensorInfo("x", "FP64", [-1])]
        outputs = [TensorInfo("y", "FP64", [-1])]

        def predict(self, data):
            with open(os.environ["CALLS_FILE"], "a") as calls:
                calls.write("{version}\\n")
            time.sleep({delay})
            return {{"y": data["x"] * {version}}}
"""

WEIGHTS = [0.5, -1.0, 2.0]


@pytest.fixture
def prefix() -> Iterator[str]:
    with redis_prefix(URL) as prefix:
        yield prefix


def wait_for(condition: Callable[[], bool], what: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def counted_model(repo: Path, spec: dict[str, Any], versions: int = 1, delay: float = 0) -> Path:
    for version in range(1, versions + 1):
        write_python_model(
            version_folder(repo, "m", version), COUNTED.format(version=version, delay=delay)
        )
    (repo / "m" / "model.yaml").write_text(yaml.safe_dump(spec))
    return repo


def calls(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def x_body(values: list[float], **parameters: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "inputs": [{"name": "x", "datatype": "FP64", "shape": [len(values)], "data": values}]
    }
    if parameters:
        body["parameters"] = parameters
    return body


def infer(client: httpx.Client, body: dict[str, Any], path: str = "/v2/models/m") -> Any:
    response = client.post(f"{path}/infer", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def cache_stats(client: httpx.Client, version: int = 1) -> tuple[int, int, int]:
    """(cache hits, cache misses, executions) of model m's ``version``."""
    stats = client.get(f"/v2/models/m/versions/{version}/stats").json()["model_stats"][0]
    infer_stats = stats["inference_stats"]
    return (
        infer_stats["cache_hit"]["count"],
        infer_stats["cache_miss"]["count"],
        stats["execution_count"],
    )


def metric(client: httpx.Client, name: str, **labels: str) -> float:
    text = client.get("/metrics").text
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def server_env(calls_file: Path) -> dict[str, str]:
    return {**os.environ, "CALLS_FILE": str(calls_file)}


@pytest.mark.parametrize("backend", ["memory", "redis"])
def test_a_repeated_request_is_a_hit_and_the_model_does_not_run_again(
    tmp_path: Path, prefix: str, backend: str
) -> None:
    repo = counted_model(tmp_path / "repo", {"cache": {"backend": backend, "ttl_s": 60}})
    ledger = tmp_path / "calls"
    flags = ("--redis-url", URL, "--redis-prefix", prefix)
    with (
        run_server(repo, *flags, grpc=False, env=server_env(ledger)) as server,
        httpx.Client(base_url=server.http_url, timeout=30) as client,
    ):
        first = infer(client, x_body([1.0, 2.0]))
        second = infer(client, x_body([1.0, 2.0]))
        assert first["outputs"][0]["data"] == second["outputs"][0]["data"] == [1.0, 2.0]
        assert second["id"] != first["id"]  # the request's own id, not the cached one's
        assert calls(ledger) == ["1"]
        assert cache_stats(client) == (1, 1, 1)
        assert metric(client, "serval_cache_requests_total", model="m", result="hit") == 1
        assert metric(client, "serval_cache_requests_total", model="m", result="miss") == 1
        # Another input, or `cache: false`, runs the model.
        infer(client, x_body([3.0]))
        infer(client, x_body([1.0, 2.0], cache=False))
        assert calls(ledger) == ["1", "1", "1"]
        assert metric(client, "serval_cache_requests_total", model="m", result="skipped") == 1
        bad = client.post("/v2/models/m/infer", json=x_body([1.0], cache="no"))
        assert bad.status_code == 400 and "cache" in bad.json()["error"]
    if backend == "redis":
        client = redis.Redis.from_url(URL)
        keys = list(client.scan_iter(f"{prefix}cache:m:1:*"))
        assert len(keys) == 2  # [1, 2] and [3]
        assert 0 < client.pttl(keys[0]) <= 60_000
        assert not client.get(keys[0]).startswith(b"\x80")  # not a pickle
        client.close()


@pytest.mark.parametrize("backend", ["memory", "redis"])
def test_a_new_version_never_answers_from_the_old_version_s_entries(
    tmp_path: Path, prefix: str, backend: str
) -> None:
    spec = {"version_policy": "all", "cache": {"backend": backend}}
    repo = counted_model(tmp_path / "repo", spec, versions=2)
    ledger = tmp_path / "calls"
    flags = ("--redis-url", URL, "--redis-prefix", prefix)
    with (
        run_server(repo, *flags, grpc=False, env=server_env(ledger)) as server,
        httpx.Client(base_url=server.http_url, timeout=30) as client,
    ):
        old = infer(client, x_body([4.0]), "/v2/models/m/versions/1")
        assert old["outputs"][0]["data"] == [4.0]
        new = infer(client, x_body([4.0]), "/v2/models/m/versions/2")
        assert new["outputs"][0]["data"] == [8.0]
        latest = infer(client, x_body([4.0]))  # the policy's latest: version 2, now a hit
        assert latest["model_version"] == "2" and latest["outputs"][0]["data"] == [8.0]
        assert calls(ledger) == ["1", "2"]
        assert cache_stats(client, 2)[:2] == (1, 1)


def test_concurrent_identical_requests_run_the_model_once(tmp_path: Path) -> None:
    repo = counted_model(tmp_path / "repo", {"cache": {}}, delay=0.5)
    ledger = tmp_path / "calls"
    with (
        run_server(repo, "--inference-threads", "8", grpc=False, env=server_env(ledger)) as server,
        httpx.Client(base_url=server.http_url, timeout=30) as client,
        ThreadPoolExecutor(8) as pool,
    ):
        answers = list(pool.map(lambda _: infer(client, x_body([9.0])), range(8)))
        assert all(answer["outputs"][0]["data"] == [9.0] for answer in answers)
        assert calls(ledger) == ["1"]
        hits, misses, executions = cache_stats(client)
        assert (hits, misses, executions) == (7, 1, 1)


def test_two_servers_share_the_redis_cache(tmp_path: Path, prefix: str) -> None:
    repo = counted_model(tmp_path / "repo", {"cache": {"backend": "redis"}})
    ledger = tmp_path / "calls"
    flags = ("--redis-url", URL, "--redis-prefix", prefix)
    env = server_env(ledger)
    with (
        run_server(repo, *flags, grpc=False, env=env) as one,
        run_server(repo, *flags, grpc=False, env=env) as two,
        httpx.Client(base_url=one.http_url, timeout=30) as first,
        httpx.Client(base_url=two.http_url, timeout=30) as second,
    ):
        infer(first, x_body([5.0, 6.0]))
        # The first server's answer is written to Redis in the background: wait for it.
        store = redis.Redis.from_url(URL)
        wait_for(lambda: bool(list(store.scan_iter(f"{prefix}cache:m:1:*"))), "the entry")
        store.close()
        answer = infer(second, x_body([5.0, 6.0]))
        assert answer["outputs"][0]["data"] == [5.0, 6.0]
        assert calls(ledger) == ["1"]  # only the first server ran the model
        assert cache_stats(second) == (1, 0, 0)


def features_repo(root: Path, prefix: str, spec: dict[str, Any], name: str = "scorer") -> Path:
    write_model(root, name, 1, linear(WEIGHTS, 0.25))
    features = {
        "entity": "user_id",
        "key": f"{prefix}user:{{user_id}}",
        "fields": ["age", "income", "clicks"],
        "into": "x",
        **spec,
    }
    (root / name / "model.yaml").write_text(yaml.safe_dump({"features": features}))
    return root


def users_body(*users: str) -> dict[str, Any]:
    return {
        "inputs": [
            {"name": "user_id", "datatype": "BYTES", "shape": [len(users)], "data": list(users)}
        ]
    }


def in_process(repo: Path, rows: list[list[float]]) -> np.ndarray[Any, Any]:
    session = ort.InferenceSession(str(repo / "scorer" / "1" / "model.onnx"))
    (y,) = session.run(None, {"x": np.asarray(rows, np.float32)})
    return np.asarray(y)


def test_feature_lookup_fills_the_input_from_redis_hashes(tmp_path: Path, prefix: str) -> None:
    repo = features_repo(tmp_path / "repo", prefix, {})
    store = redis.Redis.from_url(URL)
    store.hset(f"{prefix}user:u1", mapping={"age": 31, "income": "5.5e4", "clicks": 7})
    store.hset(f"{prefix}user:u2", mapping={"age": 45, "income": 1200.5, "clicks": 0, "x": 1})
    with (
        run_server(repo, "--redis-url", URL, grpc=False) as server,
        httpx.Client(base_url=server.http_url, timeout=30) as client,
    ):
        metadata = client.get("/v2/models/scorer").json()
        assert [i["name"] for i in metadata["inputs"]] == ["user_id"]  # x is looked up
        answer = infer(client, users_body("u2", "u1", "u2"), "/v2/models/scorer")
        expected = in_process(repo, [[45, 1200.5, 0], [31, 5.5e4, 7], [45, 1200.5, 0]])
        got = np.asarray(answer["outputs"][0]["data"], np.float32).reshape(expected.shape)
        np.testing.assert_allclose(got, expected, rtol=1e-6)

        unknown = client.post("/v2/models/scorer/infer", json=users_body("u1", "nobody"))
        assert unknown.status_code == 400
        assert "nobody" in unknown.json()["error"]
        store.hset(f"{prefix}user:u3", mapping={"age": "old", "income": 1, "clicks": 1})
        not_a_number = client.post("/v2/models/scorer/infer", json=users_body("u3"))
        assert not_a_number.status_code == 400
        error = not_a_number.json()["error"]
        assert "u3" in error and "age" in error
    store.close()


def test_unknown_entities_take_the_defaults_with_missing_default(
    tmp_path: Path, prefix: str
) -> None:
    spec = {"missing": "default", "defaults": {"age": 30, "income": 100}}
    repo = features_repo(tmp_path / "repo", prefix, spec)
    store = redis.Redis.from_url(URL)
    store.hset(f"{prefix}user:u1", mapping={"age": 20, "income": 10})  # no clicks: 0
    with (
        run_server(repo, "--redis-url", URL, grpc=False) as server,
        httpx.Client(base_url=server.http_url, timeout=30) as client,
    ):
        answer = infer(client, users_body("u1", "nobody"), "/v2/models/scorer")
        expected = in_process(repo, [[20, 10, 0], [30, 100, 0]])
        got = np.asarray(answer["outputs"][0]["data"], np.float32).reshape(expected.shape)
        np.testing.assert_allclose(got, expected, rtol=1e-6)
        # u1 lacks a field, "nobody" everything: both rows took defaults.
        rows = "serval_feature_rows_total"
        assert metric(client, rows, model="scorer", result="defaulted") == 2
        assert metric(client, "serval_feature_lookups_total", model="scorer") == 1
    store.close()


def batch_to_redis(repo: Path, prefix: str, tmp_path: Path, users: list[str]) -> None:
    """`serval batch --to redis://` over the users' features: x = [i, i, i] for user i."""
    lines = [f'{{"user_id": "{u}", "x": [{i}.0, {i}.0, {i}.0]}}' for i, u in enumerate(users)]
    source = tmp_path / "users.jsonl"
    source.write_text("\n".join(lines) + "\n")
    command = [
        sys.executable, "-m", "serval", "batch", str(repo / "scorer"), "--input", str(source),
        "--output", str(tmp_path / "scored"), "--key", "user_id", "--to", URL,
        "--redis-prefix", prefix, "--no-progress",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr


def test_precomputed_answers_from_serval_batch_are_served_with_their_source(
    tmp_path: Path, prefix: str
) -> None:
    repo = tmp_path / "repo"
    write_model(repo, "scorer", 1, linear(WEIGHTS, 0.25))
    batch_to_redis(repo, prefix, tmp_path, ["a", "b"])
    spec = {"precomputed": {"store": "redis", "key_input": "user_id", "fallback": "model"}}
    (repo / "scorer" / "model.yaml").write_text(yaml.safe_dump(spec))
    with (
        run_server(repo, "--redis-url", URL, "--redis-prefix", prefix, grpc=False) as server,
        httpx.Client(base_url=server.http_url, timeout=30) as client,
    ):
        body = {
            "inputs": [
                {"name": "user_id", "datatype": "BYTES", "shape": [3], "data": ["b", "new", "a"]},
                # What the model gets for rows without a precomputed answer.
                {"name": "x", "datatype": "FP32", "shape": [3, 3], "data": [9.0] * 9},
            ]
        }
        answer = infer(client, body, "/v2/models/scorer")
        outputs = {output["name"]: output for output in answer["outputs"]}
        assert outputs["source"]["data"] == ["precomputed", "model", "precomputed"]
        got = np.asarray(outputs["y"]["data"], np.float32).reshape(3, 1)
        expected = in_process(repo, [[1, 1, 1], [9, 9, 9], [0, 0, 0]])
        np.testing.assert_allclose(got, expected, rtol=1e-6)
        assert answer["parameters"]["precomputed_versions"] == "1"
        rows = "serval_precomputed_rows_total"
        assert metric(client, rows, model="scorer", source="precomputed") == 2
        assert metric(client, rows, model="scorer", source="model") == 1


def test_precomputed_fallback_error_is_a_404_naming_the_key(tmp_path: Path, prefix: str) -> None:
    repo = tmp_path / "repo"
    write_model(repo, "scorer", 1, linear(WEIGHTS, 0.25))
    batch_to_redis(repo, prefix, tmp_path, ["a"])
    spec = {"precomputed": {"store": "redis", "key_input": "user_id", "fallback": "error"}}
    (repo / "scorer" / "model.yaml").write_text(yaml.safe_dump(spec))
    with (
        run_server(repo, "--redis-url", URL, "--redis-prefix", prefix, grpc=False) as server,
        httpx.Client(base_url=server.http_url, timeout=30) as client,
    ):
        body = {
            "inputs": [
                {"name": "user_id", "datatype": "BYTES", "shape": [2], "data": ["a", "zed"]},
                {"name": "x", "datatype": "FP32", "shape": [2, 3], "data": [0.0] * 6},
            ]
        }
        missing = client.post("/v2/models/scorer/infer", json=body)
        assert missing.status_code == 404
        assert "zed" in missing.json()["error"]


def test_a_redis_that_is_not_there_keeps_cached_and_precomputed_models_serving(
    tmp_path: Path, prefix: str
) -> None:
    repo = counted_model(tmp_path / "repo", {"cache": {"backend": "redis"}})
    write_model(repo, "scorer", 1, linear(WEIGHTS, 0.25))
    spec = {"precomputed": {"store": "redis", "key_input": "user_id"}}
    (repo / "scorer" / "model.yaml").write_text(yaml.safe_dump(spec))
    features_repo(repo, prefix, {}, name="featured")
    closed = f"redis://127.0.0.1:{free_port()}/0"
    ledger = tmp_path / "calls"
    with (
        run_server(repo, "--redis-url", closed, grpc=False, env=server_env(ledger)) as server,
        httpx.Client(base_url=server.http_url, timeout=30) as client,
    ):
        for _ in range(3):
            answer = infer(client, x_body([2.0]))
            assert answer["outputs"][0]["data"] == [2.0]
        assert calls(ledger) == ["1", "1", "1"]  # every request a miss, none an error
        body = {
            "inputs": [
                {"name": "user_id", "datatype": "BYTES", "shape": [1], "data": ["a"]},
                {"name": "x", "datatype": "FP32", "shape": [1, 3], "data": [1.0, 1.0, 1.0]},
            ]
        }
        answer = infer(client, body, "/v2/models/scorer")
        sources = [o["data"] for o in answer["outputs"] if o["name"] == "source"]
        assert sources == [["model"]]
        started = time.monotonic()
        refused = client.post("/v2/models/featured/infer", json=users_body("u1"))
        assert time.monotonic() - started < 5  # never a hung request
        assert refused.status_code == 503, refused.text
        assert "Retry-After" in refused.headers
        assert "feature store" in refused.json()["error"]
        unavailable = metric(client, "serval_cache_requests_total", result="unavailable")
        assert unavailable == 3
        wait_for(lambda: "unreachable" in server.log(), "the warning")
        ready = client.get("/v2/health/ready")  # serving on, and saying what is degraded
        assert ready.status_code == 200
        assert any("unreachable" in note for note in ready.json()["degraded"]), ready.text
        outages = re.findall(r"redis redis://127\.0\.0\.1:\d+/0 is unreachable \(", server.log())
        assert len(outages) == 1, server.log()  # once per outage, not per request
