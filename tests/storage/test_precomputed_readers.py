"""The server's readers of precomputed answers, over what the batch writers wrote: the
machine's real Redis (one MGET per lookup) and real SQLite files (chunks of keys, a file or
table not written yet, a file that is not a database)."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis
import redis.asyncio as aioredis

from serval.core.composition.stores import LookupUnavailableError, PrecomputedAnswer
from serval.storage.precomputed import encode_answer, open_precomputed_store
from serval.storage.precomputed_readers import RedisPrecomputedReader, SqlitePrecomputedReader
from serval.storage.redis_connection import RedisConnection
from serval.testing import free_port
from tests.redis_keys import redis_prefix

URL = "redis://127.0.0.1:6379/0"
LOGGER = "serval.storage.precomputed_readers"
WRITTEN_AT = 1_765_000_000.5


@pytest.fixture
def prefix() -> Iterator[str]:
    with redis_prefix(URL) as prefix:
        yield prefix


def answers(count: int) -> list[tuple[str, bytes]]:
    return [
        (f"k{i}", encode_answer("m", 2, {"y": np.array([i, -i], np.float32)}, WRITTEN_AT + i))
        for i in range(count)
    ]


def check(found: PrecomputedAnswer | None, index: int) -> None:
    assert found is not None
    assert (found.model, found.version, found.written_at) == ("m", 2, WRITTEN_AT + index)
    np.testing.assert_array_equal(found.outputs["y"], [index, -index])


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING
    ]


def test_redis_answers_by_key_in_one_mget(
    prefix: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    store = open_precomputed_store(URL, prefix)
    store.write("m", answers(20))
    store.close()
    client = redis.Redis.from_url(URL)
    client.set(f"{prefix}precomputed:m:bad1", b"garbage")
    client.set(f"{prefix}precomputed:m:bad2", b"SVP2 truncated")
    client.close()
    sent: list[str] = []
    original = aioredis.Redis.execute_command

    async def counting(self: aioredis.Redis, *args: Any, **options: Any) -> Any:
        sent.append(str(args[0]))
        return await original(self, *args, **options)

    monkeypatch.setattr(aioredis.Redis, "execute_command", counting)

    async def test() -> None:
        connection = RedisConnection(URL, timeout_s=0.5)
        reader = RedisPrecomputedReader(connection, prefix)
        found = await reader.get_many("m", ["k3", "nope", "k19", "bad1", "bad2", "k3"])
        assert sent == ["MGET"]
        check(found[0], 3)
        check(found[2], 19)
        check(found[5], 3)
        assert found[1] is None and found[3] is None and found[4] is None
        assert await reader.get_many("other", ["k3"]) == [None]
        assert await reader.get_many("m", []) == []
        assert len(sent) == 2
        await connection.close()

    asyncio.run(test())
    assert len(warnings(caplog)) == 1  # undecodable records: logged once per reader
    assert "bad1" in warnings(caplog)[0]


def test_redis_down_is_unavailable() -> None:
    async def test() -> None:
        connection = RedisConnection(f"redis://127.0.0.1:{free_port()}/0", timeout_s=0.2)
        with pytest.raises(LookupUnavailableError):
            await RedisPrecomputedReader(connection).get_many("m", ["k1"])
        await connection.close()

    asyncio.run(test())


def test_sqlite_answers_many_keys_in_chunks(tmp_path: Path) -> None:
    path = tmp_path / "answers.db"
    store = open_precomputed_store(f"sqlite:///{path}")
    store.write("m", answers(1200))
    store.write("other", [("k1", encode_answer("other", 1, {"y": np.zeros(2, np.float32)}))])

    async def test() -> None:
        reader = SqlitePrecomputedReader(path)
        keys = [f"k{i}" for i in range(0, 1300, 1)]  # 1300 keys: three chunks, 100 unknown
        found = await reader.get_many("m", keys)
        for index in (0, 499, 500, 1000, 1199):
            check(found[index], index)
        assert found[1200:] == [None] * 100
        assert sum(answer is not None for answer in found) == 1200
        other = await reader.get_many("other", ["k1", "k2"])
        assert other[0] is not None and other[0].model == "other" and other[1] is None
        # A batch job writing while the server reads (WAL): the new answer is seen.
        store.write("m", [("k2000", encode_answer("m", 3, {"y": np.zeros(2, np.float32)}))])
        (late,) = await reader.get_many("m", ["k2000"])
        assert late is not None and late.version == 3
        await reader.close()

    asyncio.run(test())
    store.close()


def test_sqlite_file_or_table_not_written_yet_holds_no_answers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "later.db"

    async def test() -> None:
        reader = SqlitePrecomputedReader(path)
        assert await reader.get_many("m", ["k1", "k2"]) == [None, None]
        assert await reader.get_many("m", ["k1"]) == [None]
        assert not path.exists()  # the reader never creates the store
        sqlite3.connect(path).close()  # a file, no table yet
        assert await reader.get_many("m", ["k1"]) == [None]
        store = open_precomputed_store(f"sqlite:///{path}")  # the batch job arrives
        store.write("m", answers(2))
        store.close()
        check((await reader.get_many("m", ["k1"]))[0], 1)
        await reader.close()

    asyncio.run(test())
    assert len(warnings(caplog)) == 1


def test_sqlite_file_that_is_not_a_database_is_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "not.db"
    path.write_bytes(b"this is not a sqlite database" * 100)

    async def test() -> None:
        reader = SqlitePrecomputedReader(path)
        with pytest.raises(LookupUnavailableError, match=r"not\.db"):
            await reader.get_many("m", ["k1"])
        await reader.close()

    asyncio.run(test())
