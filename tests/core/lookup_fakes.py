"""Fakes of the stores the cache, features and precomputed layers use
(``core.composition.stores``): in memory, counting their calls, and able to be "down"."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from serval.core.composition.stores import (
    FeatureStore,
    LookupUnavailableError,
    PrecomputedAnswer,
    PrecomputedReader,
    PredictionCache,
)
from serval.core.errors import ModelConfigError
from serval.core.lifecycle.states import ServableId
from serval.core.specs.cache import CacheSpec
from serval.core.specs.features import FeaturesSpec
from serval.core.specs.precomputed import PrecomputedSpec
from serval.core.types import Tensor


class NoLookupStores:
    """A server without stores: every layer that needs one is a config error."""

    def prediction_cache(self, spec: CacheSpec, id: ServableId) -> PredictionCache:
        raise ModelConfigError("cache: no store in this test")

    def feature_store(self, spec: FeaturesSpec) -> FeatureStore:
        raise ModelConfigError("features: no store in this test")

    def precomputed_reader(self, spec: PrecomputedSpec) -> PrecomputedReader:
        raise ModelConfigError("precomputed: no store in this test")


@dataclass
class FakePredictionCache:
    entries: dict[bytes, list[Tensor]] = field(default_factory=dict)
    down: bool = False
    gets: int = 0
    puts: int = 0
    closed: bool = False

    async def get(self, key: bytes) -> list[Tensor] | None:
        self.gets += 1
        if self.down:
            raise LookupUnavailableError("the fake cache is down")
        found = self.entries.get(key)
        return None if found is None else list(found)

    def put(self, key: bytes, outputs: Sequence[Tensor]) -> None:
        self.puts += 1
        if not self.down:
            self.entries[key] = list(outputs)

    async def close(self) -> None:
        self.closed = True


@dataclass
class FakeFeatureStore:
    """Hashes by key: ``hashes["user:7"] = {"age": b"31"}``."""

    hashes: dict[str, dict[str, bytes]] = field(default_factory=dict)
    down: bool = False
    round_trips: int = 0
    keys_asked: list[str] = field(default_factory=list)

    async def fetch(self, keys: Sequence[str], fields: Sequence[str]) -> list[list[bytes | None]]:
        self.round_trips += 1
        if self.down:
            raise LookupUnavailableError("the fake feature store is down")
        self.keys_asked.extend(keys)
        return [[self.hashes.get(key, {}).get(name) for name in fields] for key in keys]


@dataclass
class FakePrecomputedReader:
    """Answers by (model, key)."""

    answers: dict[tuple[str, str], PrecomputedAnswer] = field(default_factory=dict)
    down: bool = False
    round_trips: int = 0

    async def get_many(self, model: str, keys: Sequence[str]) -> list[PrecomputedAnswer | None]:
        self.round_trips += 1
        if self.down:
            raise LookupUnavailableError("the fake precomputed store is down")
        return [self.answers.get((model, key)) for key in keys]


@dataclass
class FakeLookupStores:
    """``LookupStores`` over the fakes above (one cache per version, made on first use)."""

    caches: dict[ServableId, FakePredictionCache] = field(default_factory=dict)
    features: FakeFeatureStore = field(default_factory=FakeFeatureStore)
    precomputed: FakePrecomputedReader = field(default_factory=FakePrecomputedReader)

    def prediction_cache(self, spec: CacheSpec, id: ServableId) -> PredictionCache:
        return self.caches.setdefault(id, FakePredictionCache())

    def feature_store(self, spec: FeaturesSpec) -> FeatureStore:
        return self.features

    def precomputed_reader(self, spec: PrecomputedSpec) -> PrecomputedReader:
        return self.precomputed
