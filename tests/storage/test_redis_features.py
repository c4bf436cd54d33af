"""Feature hashes from the machine's real Redis: each key's fields in order, None for an
absent hash or field, all keys of a batch in one pipelined round trip."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from redis.asyncio.client import Pipeline

from serval.core.composition.stores import LookupUnavailableError
from serval.storage.redis_connection import RedisConnection
from serval.storage.redis_features import RedisFeatureStore
from serval.testing import free_port
from tests.redis_keys import redis_prefix

URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
def prefix() -> Iterator[str]:
    with redis_prefix(URL) as prefix:
        yield prefix


@pytest.fixture
def pipelines(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The commands of each pipeline sent (one list per round trip)."""
    sent: list[list[str]] = []
    original = Pipeline.execute

    async def counting(self: Pipeline, *args: Any, **options: Any) -> Any:
        sent.append([str(command[0][0]) for command in self.command_stack])
        return await original(self, *args, **options)

    monkeypatch.setattr(Pipeline, "execute", counting)
    return sent


def test_fields_of_many_keys_in_one_round_trip(prefix: str, pipelines: list[list[str]]) -> None:
    client = redis.Redis.from_url(URL)
    client.hset(f"{prefix}user:1", mapping={"age": "31", "income": "52000.5", "clicks": "7"})
    client.hset(f"{prefix}user:2", mapping={"age": "40", "other": "x"})
    client.close()

    async def test() -> None:
        connection = RedisConnection(URL, timeout_s=0.5)
        store = RedisFeatureStore(connection)
        keys = [f"{prefix}user:1", f"{prefix}user:3", f"{prefix}user:2"]
        values = await store.fetch(keys, ["age", "income", "clicks"])
        assert values == [
            [b"31", b"52000.5", b"7"],
            [None, None, None],  # no such hash
            [b"40", None, None],  # a hash without those fields
        ]
        assert store.round_trips == 1
        assert pipelines == [["HMGET"] * 3]
        many = await store.fetch([f"{prefix}user:{i % 3 + 1}" for i in range(300)], ["age"])
        assert len(many) == 300 and many[0] == [b"31"] and many[1] == [b"40"]
        assert store.round_trips == 2 and len(pipelines) == 2  # 300 rows, one round trip
        assert await store.fetch([], ["age"]) == []
        assert store.round_trips == 2
        assert store.connection is connection
        await connection.close()

    asyncio.run(test())


def test_a_redis_that_is_down_is_unavailable() -> None:
    async def test() -> None:
        connection = RedisConnection(f"redis://127.0.0.1:{free_port()}/0", timeout_s=0.2)
        store = RedisFeatureStore(connection)
        with pytest.raises(LookupUnavailableError):
            await store.fetch(["user:1"], ["age"])
        await connection.close()

    asyncio.run(test())
