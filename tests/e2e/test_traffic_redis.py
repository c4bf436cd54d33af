"""Bandit arms with --redis-url against the real server: replicas share the counts through the
real Redis on 127.0.0.1:6379 (a key prefix of the test's own); an unreachable Redis leaves
serving untouched, logged once."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from serval.testing import run_server
from tests.e2e.test_traffic import BODY, repository, v2, wait_for
from tests.redis_keys import redis_prefix

pytestmark = pytest.mark.e2e

URL = "redis://127.0.0.1:6379/0"
BANDIT = 'version_policy: all\ntraffic:\n  bandit: {versions: ["1", "2"]}\n'


@pytest.fixture
def prefix() -> Iterator[str]:
    with redis_prefix(URL) as prefix:
        yield prefix


def pulls(client: httpx.Client) -> int:
    arms = client.get("/v2/models/m/traffic").json()["bandit"]
    return sum(arm["pulls"] for arm in arms.values())


def test_replicas_share_the_bandit_s_arms(tmp_path: Path, prefix: str) -> None:
    repo = repository(tmp_path, BANDIT, versions=2)
    flags = ("--redis-url", URL, "--redis-prefix", prefix)
    with (
        run_server(repo, *flags, grpc=False) as one,
        run_server(repo, *flags, grpc=False) as two,
        httpx.Client(base_url=one.http_url, timeout=30) as first,
        httpx.Client(base_url=two.http_url, timeout=30) as second,
    ):
        for _ in range(30):
            v2(first)
        for _ in range(12):
            v2(second)
        # Each replica adds what it learned to Redis every half second and reads the totals.
        wait_for(lambda: pulls(first) == 42 and pulls(second) == 42, 10, "both see 42 pulls")
    client = redis.Redis.from_url(URL, decode_responses=True)
    (key,) = client.keys(f"{prefix}bandit:m:*")  # one hash: both replicas have one policy
    stored = client.hgetall(key)
    assert int(stored.get("1:pulls", 0)) + int(stored.get("2:pulls", 0)) == 42
    assert 0 < client.ttl(key) <= 30 * 86400  # forgotten when no replica uses it any more
    client.close()


def test_an_unreachable_redis_is_logged_once_and_serving_goes_on(tmp_path: Path) -> None:
    repo = repository(tmp_path, BANDIT, versions=2)
    with (
        run_server(repo, "--redis-url", "redis://127.0.0.1:1/0", grpc=False) as server,
        httpx.Client(base_url=server.http_url, timeout=30) as client,
    ):
        started = time.monotonic()
        while time.monotonic() - started < 1.5:  # several exchanges fail meanwhile
            assert client.post("/v2/models/m/infer", json=BODY).status_code == 200
        wait_for(lambda: "unreachable" in server.log(), 10, "the warning")
        assert server.log().count("bandit state store redis://127.0.0.1:1 is unreachable") == 1
        assert pulls(client) > 0  # learning locally
