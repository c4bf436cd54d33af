"""The stores of the cache, features and precomputed layers, as the composition root hands
them to the layer plan (``core.composition.stores.LookupStores``).

Redis is imported only when a model names it, so a server without the redis extra serves
every other model (and a model that names redis is a load error saying what to install).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from serval.core.composition.layer_counters import LayerCounters
from serval.core.composition.stores import FeatureStore, PrecomputedReader, PredictionCache
from serval.core.errors import ModelConfigError
from serval.core.lifecycle.states import ServableId
from serval.core.specs.cache import CacheSpec
from serval.core.specs.features import FeaturesSpec
from serval.core.specs.precomputed import PrecomputedSpec
from serval.storage.memory_cache import MemoryPredictionCache

if TYPE_CHECKING:
    from serval.storage.precomputed_readers import SqlitePrecomputedReader
    from serval.storage.redis_connection import RedisConnection
    from serval.storage.redis_features import RedisFeatureStore

REDIS_EXTRA = "pip install 'serval-server[redis]'"


class ServerLookupStores:
    """Memory caches per version; one Redis connection (``redis_url``) shared by every layer
    that names redis; one reader per SQLite file."""

    def __init__(
        self,
        redis_url: str | None,
        *,
        prefix: str = "serval:",
        timeout_s: float = 0.25,
        counters: LayerCounters,
    ) -> None:
        self._redis_url = redis_url
        self._prefix = prefix
        self._timeout_s = timeout_s
        self._counters = counters
        # Made on first need, by URL (the server's and any a precomputed section names).
        self._connections: dict[str, RedisConnection] = {}
        self._features: RedisFeatureStore | None = None
        self._redis_readers: dict[str, PrecomputedReader] = {}
        self._sqlite_readers: dict[Path, SqlitePrecomputedReader] = {}

    def prediction_cache(self, spec: CacheSpec, id: ServableId) -> PredictionCache:
        if spec.backend == "memory":
            return MemoryPredictionCache(spec.max_entries, spec.ttl_s)
        connection = self._connection(self._server_url("cache.backend: redis"), "cache.backend")
        from serval.storage.redis_cache import RedisPredictionCache  # noqa: PLC0415

        return RedisPredictionCache(
            connection,
            key_prefix=f"{self._prefix}cache:{id.name}:{id.version}:",
            ttl_s=spec.ttl_s,
            counters=self._counters,
            model=id.name,
            version=id.version,
        )

    def feature_store(self, spec: FeaturesSpec) -> FeatureStore:
        if self._features is None:
            url = self._server_url("features.store: redis")
            connection = self._connection(url, "features.store")
            from serval.storage.redis_features import RedisFeatureStore  # noqa: PLC0415

            self._features = RedisFeatureStore(connection)
        return self._features

    def precomputed_reader(self, spec: PrecomputedSpec) -> PrecomputedReader:
        store = spec.store
        if store.startswith("sqlite:"):
            return self._sqlite_reader(store)
        url = self._server_url("precomputed.store: redis") if store == "redis" else store
        reader = self._redis_readers.get(url)
        if reader is None:
            connection = self._connection(url, "precomputed.store")
            from serval.storage.precomputed_readers import (  # noqa: PLC0415
                RedisPrecomputedReader,
            )

            reader = self._redis_readers[url] = RedisPrecomputedReader(connection, self._prefix)
        return reader

    def _server_url(self, field: str) -> str:
        if self._redis_url is None:
            raise ModelConfigError(f"{field} needs the server's --redis-url")
        return self._redis_url

    def _connection(self, url: str, field: str) -> RedisConnection:
        connection = self._connections.get(url)
        if connection is None:
            try:
                from serval.storage.redis_connection import RedisConnection  # noqa: PLC0415
            except ImportError as exc:
                raise ModelConfigError(
                    f"{field}: redis needs the redis package ({REDIS_EXTRA})"
                ) from exc
            connection = self._connections[url] = RedisConnection(url, timeout_s=self._timeout_s)
        return connection

    def _sqlite_reader(self, url: str) -> SqlitePrecomputedReader:
        # As SQLAlchemy: sqlite:///relative/file.db, sqlite:////absolute/file.db.
        path = url[len("sqlite:///") :] if url.startswith("sqlite:///") else ""
        if not path:
            raise ModelConfigError(
                f"precomputed.store: {url}: expected sqlite:///relative.db or "
                "sqlite:////absolute.db"
            )
        resolved = Path(path).resolve()
        reader = self._sqlite_readers.get(resolved)
        if reader is None:
            from serval.storage.precomputed_readers import (  # noqa: PLC0415
                SqlitePrecomputedReader,
            )

            reader = self._sqlite_readers[resolved] = SqlitePrecomputedReader(resolved)
        return reader

    def degraded(self) -> str | None:
        """What readiness says while a Redis the layers use is unreachable (the server serves
        on: caches miss, precomputed rows go to the model, feature lookups answer 503)."""
        down = [
            f"{connection.describe()} ({connection.down_reason})"
            for connection in self._connections.values()
            if connection.down
        ]
        if not down:
            return None
        return (
            f"redis {', '.join(down)} unreachable: prediction caches miss, precomputed rows go "
            f"to the model, feature lookups answer 503"
        )

    async def close(self) -> None:
        """Close the Redis connections and the SQLite readers (the server stops)."""
        for reader in self._sqlite_readers.values():
            await reader.close()
        for connection in self._connections.values():
            await connection.close()
        self._sqlite_readers.clear()
        self._connections.clear()
        self._redis_readers.clear()
        self._features = None
