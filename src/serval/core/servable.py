"""Servables: loaded model versions that answer ``predict``.

A runtime provides a ``Predictor`` (blocking, thread-safe). The core turns it into an async
``Servable`` that runs it in a bounded thread pool, so inference never runs on the event loop.
Batching, caching and pipelines are further servables that wrap a servable
(``core.composition``): a wrapper delegates what it does not change, ``workload()`` included.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from serval.core.call_slots import CallSlots, escaped_model_error
from serval.core.deadlines import raise_if_expired
from serval.core.types import InferenceRequest, InferenceResponse, ServableMetadata

logger = logging.getLogger(__name__)


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


class QueuedRequest(Protocol):
    """A request waiting in a servable's queue (``SubmittingServable.submit``)."""

    @property
    def future(self) -> asyncio.Future[InferenceResponse]:
        """Done with the answer, or the error, once the request ran."""
        ...


class SubmittingServable(Servable, Protocol):
    """A servable with a queue that takes a request without being awaited: ``submit`` puts it
    in the queue at once, so a caller can start several calls and then await each, with no
    task per call (a composite's independent steps join the same batches that way). Await
    ``entry.future`` for the answer, then ``withdraw(entry)`` on every path, as when giving
    the call up."""

    def submit(self, request: InferenceRequest) -> QueuedRequest:
        """Queue ``request``; raises at once what ``predict`` would raise before queueing
        (unloading, past its deadline, the queue full, bad rows)."""
        ...

    def withdraw(self, entry: QueuedRequest) -> None:
        """Take ``entry`` out of the queue if it still waits there (its future is cancelled);
        harmless once it was answered, and when called twice."""
        ...


@runtime_checkable
class TimedPredictor(Protocol):
    """A predictor with a time limit of its own per call (e.g. a Python model's
    ``runtime_options.timeout_s``): past it, the call is abandoned and answered 504."""

    @property
    def call_timeout_s(self) -> float | None: ...


@dataclass(frozen=True, slots=True)
class CallLimits:
    """How much of the shared inference pool one model may use (``core.call_slots``); the
    default bounds nothing (the composition root sets the real bounds)."""

    max_concurrency: int = sys.maxsize
    max_waiting: int = 10_000


class ThreadPoolServable:
    """Runs a blocking ``Predictor`` in an executor: one thread hop per call, at most
    ``limits.max_concurrency`` calls at once."""

    __slots__ = ("_executor", "_predictor", "_slots", "abandoned_calls")

    def __init__(
        self, predictor: Predictor, executor: Executor, limits: CallLimits | None = None
    ) -> None:
        limits = limits if limits is not None else CallLimits()
        self._predictor = predictor
        self._executor = executor
        self._slots = CallSlots(limits.max_concurrency, limits.max_waiting)
        self.abandoned_calls = 0  # given up (timeout, deadline) while the model still ran them

    @property
    def metadata(self) -> ServableMetadata:
        return self._predictor.metadata

    async def predict(self, request: InferenceRequest) -> InferenceResponse:
        submitted = time.perf_counter_ns()
        slots = self._slots
        if not slots.try_acquire():
            await slots.acquire(request)
        loop = asyncio.get_running_loop()
        try:
            job = self._executor.submit(self._timed, request)
        except BaseException:
            slots.release()
            raise
        try:
            started, response = await asyncio.wrap_future(job, loop=loop)
        except BaseException:
            # Cancelled (timeout, deadline, client gone, shutdown) or failed: a job not
            # started never runs; a running one keeps its slot until its thread returns.
            if not job.cancel() and not job.done():  # cancel() fails once it runs
                self._abandoned(request)
            slots.release_when_done(job, loop)  # type: ignore[arg-type]
            raise
        slots.release()
        response.timings.queue_ns = started - submitted
        response.timings.queued_at_ns = submitted
        return response

    def workload(self) -> int:
        return 0  # its requests wait in the shared pool's queue, reported on its own

    def _abandoned(self, request: InferenceRequest) -> None:
        self.abandoned_calls += 1
        logger.warning(
            "model %r: a call was abandoned while the model ran it (timeout or deadline); its "
            "thread stays taken until the model returns (%d abandoned so far)",
            request.model_name,
            self.abandoned_calls,
        )

    def _timed(self, request: InferenceRequest) -> tuple[int, InferenceResponse]:
        started = time.perf_counter_ns()
        raise_if_expired(request)  # it may have waited for a thread past its deadline
        try:
            return started, self._predictor.predict(request)
        except Exception:
            raise
        except GeneratorExit:
            raise
        except BaseException as exc:  # SystemExit & co. must not reach the event loop
            raise escaped_model_error(exc, request.model_name) from exc

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._executor, self._predictor.close)
