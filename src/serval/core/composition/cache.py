"""The prediction cache layer: an identical request is answered from the cache without running
the model (``cache`` in model.yaml, docs/caching.md).

It sits inside the keys and precomputed layers (keys never enter the key; precomputed rows
never reach it) and outside features and batching: a hit skips the feature lookup and the
queue. The key (``cache_keys``) covers the request; the version is the servable's own (a
memory cache belongs to one loaded version; a shared store prefixes model and version), so a
new version never answers from an old one's entries.

Concurrent identical misses run the model once (coalescing): the first becomes the leader,
the others wait for its answer. A leader that fails or is cancelled hands nothing on: each
waiter then runs its own request (a model error, a deadline or a full queue belongs to the
request that met it). A store that does not answer is a miss (counted), never an error.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Collection, Sequence

from serval.core.composition.cache_keys import cache_key
from serval.core.composition.layer_counters import LayerCounters
from serval.core.composition.stores import LookupUnavailableError, PredictionCache
from serval.core.composition.wrapper import WrappingServable
from serval.core.errors import ModelConfigError
from serval.core.servable import Servable
from serval.core.timings import CACHE_HIT, CACHE_MISS, InferenceTimings
from serval.core.types import InferenceRequest, InferenceResponse, ServableId, Tensor


class CachingServable(WrappingServable):
    """Answers from ``cache`` what it holds; runs ``inner`` on a miss and stores the answer."""

    __slots__ = ("_cache", "_counters", "_id", "_inputs", "_pending", "_version")

    def __init__(
        self,
        inner: Servable,
        cache: PredictionCache,
        id: ServableId,
        counters: LayerCounters,
        inputs: Collection[str] | None = None,
    ) -> None:
        super().__init__(inner)
        self._cache = cache
        self._id = id
        self._version = str(id.version)
        self._counters = counters
        self._inputs = None if inputs is None else _known_inputs(inner, inputs)
        # Misses being computed now, by key: the leader's future, which waiters await.
        self._pending: dict[bytes, asyncio.Future[list[Tensor]]] = {}

    async def predict(self, request: InferenceRequest) -> InferenceResponse:
        if not request.cache:
            self._count("skipped")
            return await self.inner.predict(request)
        started = time.perf_counter_ns()
        key = cache_key(request, self._inputs)
        pending = self._pending.get(key)
        if pending is not None:
            outputs = await _shared(pending)
            if outputs is not None:
                self._count("hit")
                return self._answer(request, outputs, started)
        else:
            try:
                outputs = await self._cache.get(key)
            except LookupUnavailableError:
                self._count("unavailable")
                outputs = None
            if outputs is not None:
                self._count("hit")
                return self._answer(request, outputs, started)
        looked_up = time.perf_counter_ns() - started
        return await self._compute(request, key, looked_up)

    async def _compute(
        self, request: InferenceRequest, key: bytes, looked_up_ns: int
    ) -> InferenceResponse:
        """Run ``inner`` as the leader of ``key`` (unless another request already leads it:
        then this one runs on its own, uncoalesced), store and share the answer."""
        leads = key not in self._pending
        future: asyncio.Future[list[Tensor]] | None = None
        if leads:
            future = self._pending[key] = asyncio.get_running_loop().create_future()
        try:
            response = await self.inner.predict(request)
        except BaseException:
            if future is not None:
                future.cancel()  # waiters run their own requests
            raise
        finally:
            if leads:
                del self._pending[key]
        self._count("miss")
        stored = time.perf_counter_ns()
        outputs = list(response.outputs)
        self._cache.put(key, outputs)
        if future is not None:
            future.set_result(outputs)
        timings = response.timings
        timings.cache = CACHE_MISS
        timings.cache_ns = looked_up_ns + time.perf_counter_ns() - stored
        return response

    def _answer(
        self, request: InferenceRequest, outputs: Sequence[Tensor], started: int
    ) -> InferenceResponse:
        # A response of its own: outer layers (keys) and the data plane change it in place.
        return InferenceResponse(
            request.model_name,
            list(outputs),
            timings=InferenceTimings(
                executions=0, cache=CACHE_HIT, cache_ns=time.perf_counter_ns() - started
            ),
        )

    def _count(self, outcome: str) -> None:
        self._counters.add("cache", self._id.name, self._version, outcome)

    async def close(self) -> None:
        try:
            await self.inner.close()
        finally:
            await self._cache.close()


def _known_inputs(inner: Servable, inputs: Collection[str]) -> frozenset[str]:
    """``inputs`` (``cache.inputs``), each an input of the model; else a load error."""
    metadata = inner.metadata
    unknown = [name for name in inputs if metadata.input(name) is None]
    if unknown:
        known = ", ".join(spec.name for spec in metadata.inputs) or "none"
        raise ModelConfigError(
            f"cache.inputs: {', '.join(repr(n) for n in unknown)} is not an input of the "
            f"model (its inputs: {known})"
        )
    return frozenset(inputs)


async def _shared(future: asyncio.Future[list[Tensor]]) -> list[Tensor] | None:
    """The leader's outputs, or None when the leader gave up (its failure is its own)."""
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        if future.cancelled():
            return None
        raise  # this waiter itself was cancelled
