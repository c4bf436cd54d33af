"""What the cache, features and precomputed layers read and write: protocols that
``serval.storage`` implements (memory, Redis, SQLite) and the composition root hands in.

Every call of a store that talks to a server is bounded by a timeout and raises
``LookupUnavailableError`` when the server is down, slow or refusing; each layer decides
what that means for the request (a cache miss, a fallback to the model, a 503).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from serval.core.specs.cache import CacheSpec
from serval.core.specs.features import FeaturesSpec
from serval.core.specs.precomputed import PrecomputedSpec
from serval.core.types import ServableId, Tensor

Array = np.ndarray[Any, Any]

KEY_SEPARATOR = "\x1f"


def precomputed_key(values: Sequence[object]) -> str:
    """The stored key of a row whose key columns (or key inputs) hold ``values``: ``str`` of
    each value, bytes decoded as UTF-8, several joined by U+001F. The batch job writes by it
    and the precomputed layer reads by it, so the two always agree."""
    return KEY_SEPARATOR.join(
        v.decode() if isinstance(v, bytes) else str(v.item() if isinstance(v, np.generic) else v)
        for v in values
    )


class LookupUnavailableError(Exception):
    """The store did not answer (unreachable, timed out, or an unusable reply). The message
    says why, for the one log line per outage the store writes."""


class PredictionCache(Protocol):
    """Answers by key (``core.composition.cache_keys``) for one model version."""

    async def get(self, key: bytes) -> list[Tensor] | None:
        """The outputs stored under ``key``, or None. Raises ``LookupUnavailableError``."""
        ...

    def put(self, key: bytes, outputs: Sequence[Tensor]) -> None:
        """Store ``outputs`` under ``key`` for the cache's TTL. Never raises and never waits:
        a store behind a network writes in the background, and a failed write is counted."""
        ...

    async def close(self) -> None:
        """Drop what this version stored in memory (its servable is unloading)."""
        ...


class FeatureStore(Protocol):
    """Hashes of fields by key (an online feature store)."""

    async def fetch(self, keys: Sequence[str], fields: Sequence[str]) -> list[list[bytes | None]]:
        """For each key, the value of each field (None where the hash or the field is
        absent), in one round trip for all keys. Raises ``LookupUnavailableError``."""
        ...


@dataclass(frozen=True, slots=True)
class PrecomputedAnswer:
    """One key's answer as a batch job wrote it: the model and version that computed it,
    when (``time.time()``; None for a record that does not say), and its outputs (one row
    each, without the batch dimension)."""

    model: str
    version: int
    outputs: dict[str, Array]
    written_at: float | None = None


class PrecomputedReader(Protocol):
    """Precomputed answers by key (``serval.storage.precomputed`` has the format)."""

    async def get_many(self, model: str, keys: Sequence[str]) -> list[PrecomputedAnswer | None]:
        """Each key's answer, or None, in one round trip. A record that cannot be decoded is
        None (and logged once by the reader). Raises ``LookupUnavailableError``."""
        ...


class LookupStores(Protocol):
    """Where the layers of one loaded version get their stores (the composition root's
    ``serval.storage.lookup_stores``). Each raises ``ModelConfigError`` for a spec it cannot
    serve (``backend: redis`` without the server's ``--redis-url``)."""

    def prediction_cache(self, spec: CacheSpec, id: ServableId) -> PredictionCache: ...

    def feature_store(self, spec: FeaturesSpec) -> FeatureStore: ...

    def precomputed_reader(self, spec: PrecomputedSpec) -> PrecomputedReader: ...
