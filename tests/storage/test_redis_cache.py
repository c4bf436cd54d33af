"""The Redis prediction cache against the machine's real Redis: one GET per lookup, writes
in the background with the TTL, failed and dropped writes counted, garbage is a miss."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import numpy as np
import pytest
import redis
import redis.asyncio as aioredis

from serval.core.composition.layer_counters import LayerCounters
from serval.core.composition.stores import LookupUnavailableError
from serval.core.tensors.datatypes import DataType
from serval.core.types import Tensor
from serval.storage.redis_cache import RedisPredictionCache
from serval.storage.redis_connection import RedisConnection
from serval.testing import free_port
from tests.redis_keys import redis_prefix
from tests.storage.redis_doubles import silent_server

URL = "redis://127.0.0.1:6379/0"
OUTPUTS = [
    Tensor("y", DataType.FP32, np.array([[0.5, -1.0]], np.float32)),
    Tensor("label", DataType.BYTES, np.array([b"cat"], dtype=np.object_)),
]


@pytest.fixture
def prefix() -> Iterator[str]:
    with redis_prefix(URL) as prefix:
        yield prefix


@pytest.fixture
def commands(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The commands the asyncio client sends (not pipelines), in order."""
    sent: list[str] = []
    original = aioredis.Redis.execute_command

    async def counting(self: aioredis.Redis, *args: Any, **options: Any) -> Any:
        sent.append(str(args[0]).upper())
        return await original(self, *args, **options)

    monkeypatch.setattr(aioredis.Redis, "execute_command", counting)
    return sent


def cache_of(
    connection: RedisConnection, prefix: str, counters: LayerCounters, **kw: Any
) -> RedisPredictionCache:
    return RedisPredictionCache(
        connection,
        key_prefix=f"{prefix}cache:m:3:",
        ttl_s=kw.pop("ttl_s", 60.0),
        counters=counters,
        model="m",
        version=3,
        **kw,
    )


async def wait_for(condition: Callable[[], bool], deadline_s: float = 5.0) -> None:
    deadline = time.monotonic() + deadline_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def test_an_answer_round_trips_with_one_command_and_its_ttl(
    prefix: str, commands: list[str]
) -> None:
    counters = LayerCounters()

    async def test() -> None:
        connection = RedisConnection(URL, timeout_s=0.5)
        cache = cache_of(connection, prefix, counters, ttl_s=30.0)
        assert await cache.get(b"\x01\x02") is None
        cache.put(b"\x01\x02", OUTPUTS)
        await wait_for(lambda: cache.pending_writes == 0)
        commands.clear()
        found = await cache.get(b"\x01\x02")
        assert commands == ["MGET"]  # a lookup alone in its turn of the loop: one key
        assert found is not None
        assert [(t.name, t.datatype, t.shape) for t in found] == [
            ("y", DataType.FP32, (1, 2)),
            ("label", DataType.BYTES, (1,)),
        ]
        np.testing.assert_array_equal(found[0].data, OUTPUTS[0].data)
        assert found[1].data.tolist() == [b"cat"]
        await cache.close()
        await connection.close()

    asyncio.run(test())
    client = redis.Redis.from_url(URL)
    key = f"{prefix}cache:m:3:0102"
    assert 29_000 < int(client.pttl(key)) <= 30_000  # type: ignore[arg-type]
    assert len(client.get(key) or b"") < 64  # compact: 8 bytes of numbers, 3 of text
    client.close()
    assert counters.get("cache", "m", "3", "write_failed") == 0


def test_an_entry_that_is_not_a_record_is_a_miss(prefix: str) -> None:
    client = redis.Redis.from_url(URL)
    client.set(f"{prefix}cache:m:3:aa", b"\x80\x04pickle")
    client.close()

    async def test() -> None:
        connection = RedisConnection(URL, timeout_s=0.5)
        cache = cache_of(connection, prefix, LayerCounters())
        assert await cache.get(b"\xaa") is None
        await connection.close()

    asyncio.run(test())


def test_a_write_to_a_redis_that_is_down_is_counted_and_a_lookup_is_unavailable() -> None:
    counters = LayerCounters()

    async def test() -> None:
        connection = RedisConnection(f"redis://127.0.0.1:{free_port()}/0", timeout_s=0.2)
        cache = cache_of(connection, "p:", counters)
        cache.put(b"k", OUTPUTS)  # returns at once
        await cache.close()  # waits for the write, which fails
        assert counters.get("cache", "m", "3", "write_failed") == 1
        with pytest.raises(LookupUnavailableError):
            await cache.get(b"k")
        cache.put(b"k", OUTPUTS)  # failing fast during the backoff
        await cache.close()
        assert counters.get("cache", "m", "3", "write_failed") == 2
        await connection.close()

    asyncio.run(test())


def test_writes_beyond_the_outstanding_bound_are_dropped_and_counted() -> None:
    counters = LayerCounters()

    async def test() -> None:
        async with silent_server() as port:
            connection = RedisConnection(f"redis://127.0.0.1:{port}/0", timeout_s=0.2)
            cache = cache_of(connection, "p:", counters, max_pending=2)
            started = time.perf_counter()
            for index in range(5):
                cache.put(bytes([index]), OUTPUTS)
            assert time.perf_counter() - started < 0.1  # put never waits
            assert cache.pending_writes == 2
            assert counters.get("cache", "m", "3", "write_failed") == 3
            await cache.close()  # the two hang until the exchange's bound, then fail
            assert counters.get("cache", "m", "3", "write_failed") == 5
            await connection.close()

    asyncio.run(test())


def test_close_waits_at_most_about_a_second(monkeypatch: pytest.MonkeyPatch) -> None:
    async def never(_operation: Callable[[aioredis.Redis], Awaitable[Any]]) -> Any:
        await asyncio.sleep(30)

    async def test() -> None:
        connection = RedisConnection(URL, timeout_s=0.2)
        monkeypatch.setattr(connection, "run", never)
        cache = cache_of(connection, "p:", LayerCounters())
        cache.put(b"k", OUTPUTS)
        started = time.perf_counter()
        await cache.close()
        assert 0.9 < time.perf_counter() - started < 1.5

    asyncio.run(test())


def test_lookups_and_stores_of_one_turn_share_one_command(prefix: str, commands: list[str]) -> None:
    counters = LayerCounters()

    async def test() -> None:
        connection = RedisConnection(URL, timeout_s=0.5)
        cache = cache_of(connection, prefix, counters, ttl_s=30.0)
        keys = [bytes([i]) for i in range(20)]
        commands.clear()
        for key in keys:  # twenty requests storing in the same turn
            cache.put(key, OUTPUTS)
        await wait_for(lambda: cache.pending_writes == 0)
        assert commands == []  # no SET of their own: one pipeline carried them
        stored = redis.Redis.from_url(URL)
        assert len(list(stored.scan_iter(f"{prefix}cache:m:3:*"))) == 20
        stored.close()
        commands.clear()
        found = await asyncio.gather(*(cache.get(key) for key in keys))
        assert commands == ["MGET"]  # one exchange for twenty concurrent lookups
        assert all(entry is not None for entry in found)
        await cache.close()
        await connection.close()

    asyncio.run(test())
