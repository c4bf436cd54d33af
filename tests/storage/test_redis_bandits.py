"""Bandit arms in Redis (--redis-url), against the real Redis on 127.0.0.1:6379 under a key
prefix of the test's own; an unreachable Redis leaves each replica on its own counts."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from serval.config import Settings
from serval.core.routing.bandit import Bandit
from serval.core.routing.bandit_store import ArmCounts, BanditSync
from serval.core.specs.traffic import BanditSpec
from serval.storage.redis_bandits import RedisBanditStore
from tests.redis_keys import redis_prefix

URL = "redis://127.0.0.1:6379/0"
SPEC = BanditSpec(versions=("1", "2"))


@pytest.fixture
def prefix() -> Iterator[str]:
    with redis_prefix(URL) as prefix:
        yield prefix


def test_exchange_adds_deltas_and_returns_the_totals(prefix: str) -> None:
    async def test() -> None:
        a, b = RedisBanditStore(URL, prefix=prefix), RedisBanditStore(URL, prefix=prefix)
        totals = await a.exchange("m", {1: ArmCounts(3, 2, 1.5), 2: ArmCounts(1, 0, 0.0)})
        assert totals == {1: ArmCounts(3, 2, 1.5), 2: ArmCounts(1, 0, 0.0)}
        totals = await b.exchange("m", {1: ArmCounts(1, 1, 1.0)})
        assert totals[1] == ArmCounts(4, 3, 2.5)
        assert await a.exchange("other", {}) == {}
        await a.close()
        await b.close()

    asyncio.run(test())


def test_replicas_learn_from_each_other_s_feedback(prefix: str) -> None:
    async def test() -> None:
        one, two = Bandit("m", SPEC), Bandit("m", SPEC)
        sync_one = BanditSync(RedisBanditStore(URL, prefix=prefix), lambda: [one])
        sync_two = BanditSync(RedisBanditStore(URL, prefix=prefix), lambda: [two])
        for _ in range(10):
            one.pulled(2)
            one.rewarded(2, 1.0)
        two.pulled(1)
        two.rewarded(1, 0.0)
        await sync_one.exchange_all()
        await sync_two.exchange_all()
        assert two.arms[2] == ArmCounts(10, 10, 10.0)
        assert two.arms[1] == ArmCounts(1, 1, 0.0)
        await sync_one.exchange_all()
        assert one.arms == two.arms
        other = Bandit("m", BanditSpec(versions=("1", "2"), algorithm="ucb1"))
        assert other.key != one.key  # another policy counts apart
        assert (await RedisBanditStore(URL, prefix=prefix).exchange(other.key, {})) == {}
        two.rewarded(2, 1.0)  # learned since: counted at once, locally
        assert two.arms[2].rewards == 11
        await sync_one.stop()
        await sync_two.stop()

    asyncio.run(test())


def test_an_unreachable_redis_is_logged_once_and_the_counts_stay_local(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def test() -> None:
        bandit = Bandit("m", SPEC)
        store = RedisBanditStore("redis://:secret@127.0.0.1:1/0")
        sync = BanditSync(store, lambda: [bandit])
        bandit.rewarded(1, 1.0)
        with caplog.at_level(logging.INFO, "serval.routing"):
            await sync.exchange_all()
            bandit.rewarded(1, 1.0)
            await sync.exchange_all()
        assert bandit.arms[1] == ArmCounts(0, 2, 2.0)  # serving goes on with local counts
        assert bandit.pending[1] == ArmCounts(0, 2, 2.0)  # kept for when Redis is back
        messages = [r.getMessage() for r in caplog.records]
        assert len(messages) == 1
        assert "redis://127.0.0.1:1 is unreachable" in messages[0]
        assert "secret" not in messages[0]
        await sync.stop()

    asyncio.run(test())


def test_the_redis_url_setting_names_its_scheme(tmp_path: Path) -> None:
    assert Settings(model_repository=tmp_path, redis_url=URL).redis_url == URL
    with pytest.raises(ValidationError, match="must start with redis://, rediss:// or unix://"):
        Settings(model_repository=tmp_path, redis_url="http://127.0.0.1:6379")
