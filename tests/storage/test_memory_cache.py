"""The memory prediction cache: a bounded LRU with a TTL per entry (a fake clock), whose
entries own their memory and cannot be changed by whoever gets them."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from serval.core.tensors.datatypes import DataType
from serval.core.types import Tensor
from serval.storage.memory_cache import MemoryPredictionCache


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def outputs(value: float) -> list[Tensor]:
    return [Tensor("y", DataType.FP32, np.array([value], np.float32))]


def value_of(found: list[Tensor] | None) -> float:
    assert found is not None
    return float(found[0].data[0])


def test_a_stored_answer_is_returned_and_an_unknown_key_is_none() -> None:
    async def test() -> None:
        cache = MemoryPredictionCache(10, 60.0)
        cache.put(b"a", outputs(1.0))
        assert value_of(await cache.get(b"a")) == 1.0
        assert await cache.get(b"b") is None
        cache.put(b"a", outputs(2.0))  # replaced
        assert value_of(await cache.get(b"a")) == 2.0
        assert len(cache) == 1

    asyncio.run(test())


def test_the_least_recently_used_entry_goes_first_at_max_entries() -> None:
    async def test() -> None:
        cache = MemoryPredictionCache(3, 60.0)
        for key, value in ((b"a", 1.0), (b"b", 2.0), (b"c", 3.0)):
            cache.put(key, outputs(value))
        assert await cache.get(b"a") is not None  # a is now the most recently used
        cache.put(b"d", outputs(4.0))  # evicts b, the least recently used
        assert len(cache) == 3
        assert await cache.get(b"b") is None
        assert [value_of(await cache.get(k)) for k in (b"a", b"c", b"d")] == [1.0, 3.0, 4.0]
        cache.put(b"e", outputs(5.0))  # a, c, d were used in that order: a goes
        assert await cache.get(b"a") is None
        assert value_of(await cache.get(b"e")) == 5.0

    asyncio.run(test())


def test_an_entry_expires_after_its_ttl_and_is_dropped() -> None:
    async def test() -> None:
        clock = FakeClock()
        cache = MemoryPredictionCache(10, 30.0, clock=clock)
        cache.put(b"a", outputs(1.0))
        clock.now += 10
        cache.put(b"b", outputs(2.0))
        clock.now += 19.9
        assert value_of(await cache.get(b"a")) == 1.0  # a hit does not extend the TTL
        clock.now += 0.1
        assert await cache.get(b"a") is None
        assert len(cache) == 1  # the expired entry was dropped
        assert value_of(await cache.get(b"b")) == 2.0
        clock.now += 10
        assert await cache.get(b"b") is None
        assert len(cache) == 0

    asyncio.run(test())


def test_a_view_of_a_batch_is_copied_and_stored_arrays_are_read_only() -> None:
    async def test() -> None:
        cache = MemoryPredictionCache(10, 60.0)
        batch = np.arange(12, dtype=np.float32).reshape(4, 3)
        own = np.array([7, 8], np.int64)
        cache.put(
            b"row", [Tensor("y", DataType.FP32, batch[1:2]), Tensor("n", DataType.INT64, own)]
        )
        found = await cache.get(b"row")
        assert found is not None
        row, n = found
        assert row.data.base is None  # its own memory: the batch can be freed
        assert not np.shares_memory(row.data, batch)
        np.testing.assert_array_equal(row.data, [[3.0, 4.0, 5.0]])
        for tensor in found:
            assert not tensor.data.flags.writeable
            with pytest.raises(ValueError, match="read-only"):
                tensor.data[0] = 0
        assert own.flags.writeable  # the caller's own array keeps its flags
        assert (row.name, row.datatype, n.name) == ("y", DataType.FP32, "n")
        found.pop()  # a new list each time: the cache is not changed through it
        assert len(await cache.get(b"row") or []) == 2

    asyncio.run(test())


def test_close_clears_and_max_entries_must_be_positive() -> None:
    async def test() -> None:
        cache = MemoryPredictionCache(10, 60.0)
        cache.put(b"a", outputs(1.0))
        await cache.close()
        assert len(cache) == 0
        assert await cache.get(b"a") is None

    asyncio.run(test())
    with pytest.raises(ValueError, match="max_entries"):
        MemoryPredictionCache(0, 60.0)
