"""The server's lookup stores: a memory cache per version, one Redis connection shared by
every layer that names the server's --redis-url, one reader per SQLite file or Redis URL,
and config errors naming the field."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import redis

from serval.core.composition.layer_counters import LayerCounters
from serval.core.errors import ModelConfigError
from serval.core.specs.cache import CacheSpec
from serval.core.specs.features import FeaturesSpec
from serval.core.specs.precomputed import PrecomputedSpec
from serval.core.tensors.datatypes import DataType
from serval.core.types import ServableId, Tensor
from serval.storage.lookup_stores import ServerLookupStores
from serval.storage.memory_cache import MemoryPredictionCache
from serval.storage.precomputed_readers import RedisPrecomputedReader, SqlitePrecomputedReader
from serval.storage.redis_cache import RedisPredictionCache
from serval.storage.redis_features import RedisFeatureStore
from tests.redis_keys import redis_prefix

URL = "redis://127.0.0.1:6379/0"
FEATURES = FeaturesSpec.model_validate(
    {"entity": "user_id", "key": "user:{user_id}", "fields": ["age"], "into": "x"}
)
ID = ServableId("m", 3)


@pytest.fixture
def prefix() -> Iterator[str]:
    with redis_prefix(URL) as prefix:
        yield prefix


def precomputed(store: str) -> PrecomputedSpec:
    return PrecomputedSpec.model_validate({"store": store, "key_input": "u"})


def stores(url: str | None = URL, prefix: str = "serval:") -> ServerLookupStores:
    return ServerLookupStores(url, prefix=prefix, timeout_s=0.5, counters=LayerCounters())


def test_a_memory_cache_per_version_with_the_spec_s_bounds() -> None:
    lookups = stores(None)
    spec = CacheSpec(backend="memory", ttl_s=5, max_entries=2)
    one, two = (
        lookups.prediction_cache(spec, ID),
        lookups.prediction_cache(spec, ServableId("m", 4)),
    )
    assert isinstance(one, MemoryPredictionCache) and isinstance(two, MemoryPredictionCache)
    assert one is not two
    y = [Tensor("y", DataType.FP32, np.zeros(1, np.float32))]
    for key in (b"a", b"b", b"c"):
        one.put(key, y)
    assert len(one) == 2 and len(two) == 0


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda s: s.prediction_cache(CacheSpec(backend="redis"), ID), "cache.backend"),
        (lambda s: s.feature_store(FEATURES), "features.store"),
        (
            lambda s: s.precomputed_reader(precomputed("redis")),
            "precomputed.store",
        ),
    ],
)
def test_redis_without_the_server_s_url_is_a_config_error(
    make: Callable[[ServerLookupStores], object], field: str
) -> None:
    with pytest.raises(ModelConfigError, match=f"{field}: redis needs the server's --redis-url"):
        make(stores(None))


def test_without_the_redis_package_the_error_names_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "serval.storage.redis_connection", None)
    with pytest.raises(ModelConfigError, match=r"features.store.*serval-server\[redis\]"):
        stores().feature_store(FEATURES)
    assert isinstance(stores().prediction_cache(CacheSpec(), ID), MemoryPredictionCache)


def test_every_layer_shares_the_server_s_one_connection(prefix: str) -> None:
    lookups = stores(URL, prefix)
    cache = lookups.prediction_cache(CacheSpec(backend="redis", ttl_s=60), ID)
    other = lookups.prediction_cache(CacheSpec(backend="redis"), ServableId("n", 1))
    features = lookups.feature_store(FEATURES)
    reader = lookups.precomputed_reader(precomputed("redis"))
    same_url = lookups.precomputed_reader(precomputed(URL))
    own = lookups.precomputed_reader(precomputed("redis://127.0.0.1:6379/1"))
    assert isinstance(cache, RedisPredictionCache) and isinstance(other, RedisPredictionCache)
    assert isinstance(features, RedisFeatureStore)
    assert isinstance(reader, RedisPrecomputedReader) and isinstance(own, RedisPrecomputedReader)
    assert cache.connection is other.connection is features.connection is reader.connection
    assert same_url is reader
    assert own.connection is not reader.connection
    assert lookups.feature_store(FEATURES) is features

    async def test() -> None:
        cache.put(b"\x0f", [Tensor("y", DataType.INT64, np.array([5], np.int64))])
        await cache.close()  # waits for the write
        found = await cache.get(b"\x0f")
        assert found is not None and found[0].data.tolist() == [5]
        assert await other.get(b"\x0f") is None  # another version's keys
        await lookups.close()

    asyncio.run(test())
    client = redis.Redis.from_url(URL)
    assert client.exists(f"{prefix}cache:m:3:0f")
    client.close()


def test_one_reader_per_sqlite_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    lookups = stores(None)
    relative = lookups.precomputed_reader(precomputed("sqlite:///a.db"))
    absolute = lookups.precomputed_reader(precomputed(f"sqlite:///{tmp_path / 'a.db'}"))
    other = lookups.precomputed_reader(precomputed("sqlite:///b.db"))
    assert isinstance(relative, SqlitePrecomputedReader)
    assert relative is absolute and other is not relative
    assert relative.path == (tmp_path / "a.db").resolve()

    async def test() -> None:
        assert await relative.get_many("m", ["k"]) == [None]
        await lookups.close()

    asyncio.run(test())
