"""Servables: loaded model versions that answer ``predict``.

A runtime provides a ``Predictor`` (blocking, thread-safe). The core turns it into an async
``Servable`` that runs it in a bounded thread pool, so inference never runs on the event loop.
Batching, caching and pipelines are further servables that wrap a servable
(``core.composition``): a wrapper delegates what it does not change, ``workload()`` included.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import Executor
from typing import Protocol, runtime_checkable

from serval.core.deadlines import raise_if_expired
from serval.core.types import InferenceRequest, InferenceResponse, ServableMetadata


@runtime_checkable
class Predictor(Protocol):
    """What a runtime implements. ``predict`` blocks and may be called from several threads."""

    @property
    def metadata(self) -> ServableMetadata: ...

    def predict(self, request: InferenceRequest) -> InferenceResponse: ...

    def close(self) -> None: ...


class Servable(Protocol):
    """A loaded model version as the data plane sees it."""

    @property
    def metadata(self) -> ServableMetadata: ...

    async def predict(self, request: InferenceRequest) -> InferenceResponse: ...

    def workload(self) -> int:
        """Requests waiting in this servable's own queue now (0 without a queue); a wrapper
        reports the servable it wraps."""
        ...

    async def close(self) -> None: ...


class ThreadPoolServable:
    """Runs a blocking ``Predictor`` in an executor: one thread hop per call."""

    __slots__ = ("_executor", "_predictor")

    def __init__(self, predictor: Predictor, executor: Executor) -> None:
        self._predictor = predictor
        self._executor = executor

    @property
    def metadata(self) -> ServableMetadata:
        return self._predictor.metadata

    async def predict(self, request: InferenceRequest) -> InferenceResponse:
        submitted = time.perf_counter_ns()
        loop = asyncio.get_running_loop()
        started, response = await loop.run_in_executor(self._executor, self._timed, request)
        response.timings.queue_ns = started - submitted
        response.timings.queued_at_ns = submitted
        return response

    def workload(self) -> int:
        return 0  # its requests wait in the shared pool's queue, reported on its own

    def _timed(self, request: InferenceRequest) -> tuple[int, InferenceResponse]:
        started = time.perf_counter_ns()
        raise_if_expired(request)  # it may have waited for a thread past its deadline
        return started, self._predictor.predict(request)

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._executor, self._predictor.close)
