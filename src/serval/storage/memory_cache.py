"""The ``memory`` prediction cache: a bounded LRU with a TTL per entry, one per loaded
version (``cache: {backend: memory}``)."""

from __future__ import annotations

import dataclasses
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence

from serval.core.types import Tensor


class MemoryPredictionCache:
    """A ``PredictionCache`` in this process: at most ``max_entries`` answers, the least
    recently used dropped first, each served for ``ttl_s`` after it was stored."""

    __slots__ = ("_clock", "_entries", "_max_entries", "_ttl_s")

    def __init__(
        self,
        max_entries: int,
        ttl_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self._max_entries = max_entries
        self._ttl_s = ttl_s
        self._clock = clock
        # key -> (expires at, outputs); the most recently used last.
        self._entries: OrderedDict[bytes, tuple[float, tuple[Tensor, ...]]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    async def get(self, key: bytes) -> list[Tensor] | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires_at, outputs = entry
        if self._clock() >= expires_at:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return list(outputs)

    def put(self, key: bytes, outputs: Sequence[Tensor]) -> None:
        self._entries[key] = (self._clock() + self._ttl_s, tuple(map(_stored, outputs)))
        self._entries.move_to_end(key)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    async def close(self) -> None:
        self._entries.clear()


def _stored(tensor: Tensor) -> Tensor:
    """``tensor`` as the cache keeps it: its own memory, read-only (every hit shares it)."""
    data = tensor.data
    # A view (one row of a batch's output) would keep the whole batch alive: copy it.
    # Anything else is kept as a read-only view, so the caller's array keeps its flags.
    stored = data.copy() if data.base is not None else data.view()
    stored.flags.writeable = False
    return dataclasses.replace(tensor, data=stored)
