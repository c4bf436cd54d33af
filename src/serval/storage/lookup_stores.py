"""The stores of the cache, features and precomputed layers, as the composition root hands
them to the layer plan (``core.composition.stores.LookupStores``).

SKELETON: to be written (issue 16).
"""

from __future__ import annotations

from serval.core.composition.layer_counters import LayerCounters
from serval.core.composition.stores import FeatureStore, PrecomputedReader, PredictionCache
from serval.core.lifecycle.states import ServableId
from serval.core.specs.cache import CacheSpec
from serval.core.specs.features import FeaturesSpec
from serval.core.specs.precomputed import PrecomputedSpec


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

    def prediction_cache(self, spec: CacheSpec, id: ServableId) -> PredictionCache:
        raise NotImplementedError

    def feature_store(self, spec: FeaturesSpec) -> FeatureStore:
        raise NotImplementedError

    def precomputed_reader(self, spec: PrecomputedSpec) -> PrecomputedReader:
        raise NotImplementedError

    async def close(self) -> None:
        """Close the Redis connection and the SQLite readers (the server stops)."""
