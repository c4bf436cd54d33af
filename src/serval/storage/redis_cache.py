"""The ``redis`` prediction cache (``cache: {backend: redis}``): answers shared by every
replica of the server's ``--redis-url``.

One Redis string per answer, ``{prefix}cache:{model}:{version}:{hex digest of the request}``
(the composition root passes everything before the digest as ``key_prefix``), holding the
outputs as ``serval.storage.tensor_record`` writes them, expiring after the cache's TTL. A
lookup is a GET, sent as one MGET with the lookups of the other requests of the same turn of
the event loop (``redis_batches``); a store is a background SET with PX, pipelined likewise,
so a request never waits for it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from serval.core.composition.layer_counters import LayerCounters
from serval.core.types import Tensor
from serval.storage.redis_batches import BatchedGets, BatchedSets
from serval.storage.redis_connection import RedisConnection
from serval.storage.tensor_record import decode_tensors, encode_tensors

log = logging.getLogger(__name__)

MAX_PENDING_WRITES = 1000
CLOSE_WAIT_S = 1.0


class RedisPredictionCache:
    """A ``PredictionCache`` of one model version in Redis; writes beyond
    ``max_pending`` outstanding ones are dropped (and counted, with failed writes, as the
    cache's ``write_failed``)."""

    def __init__(
        self,
        connection: RedisConnection,
        *,
        key_prefix: str,
        ttl_s: float,
        counters: LayerCounters,
        model: str,
        version: int,
        max_pending: int = MAX_PENDING_WRITES,
    ) -> None:
        self._connection = connection
        self._key_prefix = key_prefix
        self._ttl_ms = max(1, round(ttl_s * 1000))
        self._counters = counters
        self._model = model
        self._version = str(version)
        self._gets = BatchedGets(connection)
        self._sets = BatchedSets(
            connection, ttl_ms=self._ttl_ms, max_pending=max_pending, on_failed=self._write_failed
        )
        self._warned_undecodable = False
        self._warned_unwritable = False

    @property
    def connection(self) -> RedisConnection:
        """The (shared) connection it talks through."""
        return self._connection

    def key(self, key: bytes) -> str:
        return self._key_prefix + key.hex()

    async def get(self, key: bytes) -> list[Tensor] | None:
        name = self.key(key)
        value = await self._gets.get(name)
        if value is None:
            return None
        try:
            if not isinstance(value, bytes):  # a client decoding replies: not ours
                raise ValueError(f"a {type(value).__name__} reply, not bytes")
            return decode_tensors(value)
        except ValueError as exc:
            if not self._warned_undecodable:
                self._warned_undecodable = True
                log.warning("cache %s: an entry that is not a tensor record: %s", name, exc)
            return None

    def put(self, key: bytes, outputs: Sequence[Tensor]) -> None:
        try:
            # Encoded now: the outputs are the caller's, free to change once this returns.
            self._sets.set(self.key(key), encode_tensors(outputs))
        except (ValueError, TypeError, OverflowError, RuntimeError) as exc:  # unencodable; no loop
            if not self._warned_unwritable:
                self._warned_unwritable = True
                log.warning("cache of %s:%s: cannot store: %s", self._model, self._version, exc)
            self._write_failed()

    def _write_failed(self, count: int = 1) -> None:
        self._counters.add("cache", self._model, self._version, "write_failed", count)

    @property
    def pending_writes(self) -> int:
        return self._sets.pending

    async def close(self) -> None:
        """Wait a little for outstanding writes; the shared connection stays open."""
        await self._sets.flush(CLOSE_WAIT_S)
