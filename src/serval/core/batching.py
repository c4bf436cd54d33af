"""Dynamic batching: a queue in front of a ``Predictor`` that merges concurrent requests.

Scheduling rule (docs/batching.md), applied whenever a request arrives, a batch finishes or a
delay ends, while an instance is free and requests wait:

1. The batch starts from the first request of the highest priority level (1 first, arrival
   order within a level) and takes the requests behind it that can share its batch
   (``batch_assembly.batch_key``), up to ``max_batch_size`` rows.
2. It runs at once if no instance is busy (a lone request on an idle model never waits), or it
   has reached ``max_batch_size`` rows, or a preferred batch size (it is then cut to the
   largest preferred size reached), or its oldest request has waited ``max_queue_delay``.
3. Otherwise it waits for more requests, at most until that delay ends.

So batches form while instances are busy: the requests that arrive during a running batch make
up the next one. Each batch is one hop to an instance thread, where the inputs are concatenated,
the predictor runs once and the outputs are split back. A request past its deadline is dropped
before it runs; a request beyond ``max_queue_size`` is refused as overloaded. With
``max_batch_size`` 0 every request runs alone, with the same queue, priorities and deadlines.

In adaptive mode (``latency_slo_s``), an ``AdaptivePolicy`` (``core.adaptive``) replaces
``max_queue_delay`` and the preferred sizes: it caps the batch size, chooses the wait, and
refuses a request whose predicted latency exceeds the target. The policy learns from the
batches this servable runs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass
from functools import partial

from serval.core.adaptive import AdaptivePolicy, RunningBatch
from serval.core.batch_assembly import batch_key, batch_rows, merge, split
from serval.core.errors import ModelNotReadyError, OverloadedError
from serval.core.model_spec import DynamicBatchingSpec, ModelSpec
from serval.core.request_queue import RequestQueue, Waiting
from serval.core.schedule_policy import raise_if_expired
from serval.core.servable import Predictor
from serval.core.types import (
    InferenceRequest,
    InferenceResponse,
    InferenceTimings,
    ServableMetadata,
    Tensor,
)

# How many waiting requests one batch looks through for partners of its first request.
_MIN_SCAN = 64


@dataclass(frozen=True, slots=True)
class BatchingOptions:
    max_batch_size: int = 0  # rows; 0: each request runs alone
    instances: int = 1
    max_queue_delay_s: float = 0.0
    preferred_batch_sizes: tuple[int, ...] = ()
    max_queue_size: int = 0  # 0: no bound
    priority_levels: int = 0  # 0: arrival order only
    default_priority_level: int = 0  # 0: the lowest level
    latency_slo_s: float = 0.0  # above 0: adaptive mode, with this latency target

    @classmethod
    def from_spec(cls, spec: ModelSpec) -> BatchingOptions:
        queue = spec.dynamic_batching or DynamicBatchingSpec()
        return cls(
            max_batch_size=spec.max_batch_size,
            instances=spec.instances or 1,
            max_queue_delay_s=queue.max_queue_delay_us / 1e6,
            preferred_batch_sizes=queue.preferred_batch_sizes,
            max_queue_size=queue.max_queue_size,
            priority_levels=queue.priority_levels,
            default_priority_level=queue.default_priority_level,
            latency_slo_s=(queue.latency_slo_ms or 0.0) / 1e3 if queue.mode == "adaptive" else 0.0,
        )


@dataclass(frozen=True, slots=True)
class _Outcome:
    """What one execution produced, measured on the instance thread."""

    started_ns: int
    response: InferenceResponse
    parts: list[list[Tensor]]  # each request's outputs
    merge_ns: int = 0
    split_ns: int = 0


class BatchingServable:
    """A servable with a queue, ``options.instances`` concurrent executions of one predictor
    (each a thread of ``executor``; by default a pool of its own with exactly that many
    threads) and dynamic batching. In adaptive mode ``adaptive`` is the policy (by default one
    built from ``options``)."""

    def __init__(
        self,
        predictor: Predictor,
        options: BatchingOptions,
        executor: Executor | None = None,
        *,
        adaptive: AdaptivePolicy | None = None,
    ) -> None:
        self._predictor = predictor
        self._options = options
        if adaptive is None and options.latency_slo_s > 0:
            if not options.max_batch_size:
                raise ValueError("adaptive batching (latency_slo_s) needs max_batch_size > 0")
            adaptive = AdaptivePolicy(
                options.latency_slo_s, options.max_batch_size, options.instances
            )
        self._adaptive = adaptive
        self._owns_executor = executor is None
        self._executor = executor or ThreadPoolExecutor(
            options.instances, thread_name_prefix="serval-instance"
        )
        self._queue = RequestQueue(options.priority_levels, options.default_priority_level)
        self._scan_limit = max(_MIN_SCAN, 4 * options.max_batch_size)
        self._delay_ns = int(options.max_queue_delay_s * 1e9)
        self._busy = 0
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False

    @property
    def metadata(self) -> ServableMetadata:
        return self._predictor.metadata

    @property
    def waiting(self) -> int:
        """Requests in the queue, not yet in a batch."""
        return len(self._queue)

    @property
    def busy(self) -> int:
        """Instances running a batch now."""
        return self._busy

    @property
    def adaptive(self) -> AdaptivePolicy | None:
        """The adaptive batching policy, or None with the fixed rule."""
        return self._adaptive

    async def predict(self, request: InferenceRequest) -> InferenceResponse:
        enqueued = time.perf_counter_ns()
        options = self._options
        if self._closed:
            raise ModelNotReadyError(
                f"model {request.model_name!r} is unloading this version", retry_after_s=1.0
            )
        raise_if_expired(request)
        queue = self._queue
        level = queue.level(request)
        rows, key = 0, None
        if options.max_batch_size:
            rows, key = batch_rows(request, options.max_batch_size), batch_key(request)
        if options.max_queue_size and len(queue) >= options.max_queue_size:
            raise OverloadedError(
                f"model {request.model_name!r} has {len(queue)} requests waiting, its "
                f"max_queue_size; retry later",
                retry_after_s=1.0,
            )
        if self._adaptive is not None:
            ahead = queue.rows_through(level)
            self._adaptive.admit(request.model_name, rows, ahead, enqueued / 1e9)
        item = Waiting(request, asyncio.get_running_loop().create_future(), rows, key, enqueued)
        queue.push(item, level)
        self._dispatch()
        try:
            return await item.future
        finally:
            queue.remove(item)  # if the caller gave up while it waited (a deadline, a hang-up)

    # -- scheduling (on the event loop) ---------------------------------------------------

    def _dispatch(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        launched = False
        while self._busy < self._options.instances and self._queue:
            batch, wait_s = self._next_batch()
            if not batch:
                if wait_s is not None:
                    loop = asyncio.get_running_loop()
                    self._timer = loop.call_later(wait_s, self._on_timer)
                break
            self._launch(batch)
            launched = True
        if launched:
            self._queue.compact()

    def _on_timer(self) -> None:
        self._timer = None
        self._dispatch()

    def _next_batch(self) -> tuple[list[Waiting], float | None]:
        """The batch to run now, or none and how long to wait for more requests."""
        with closing(self._queue.candidates(time.monotonic())) as candidates:
            batch = self._gather(candidates)
        if not batch or not self._options.max_batch_size:
            return batch, None  # nothing waits, or the model does not batch: it runs alone
        rows = sum(item.rows for item in batch)
        if self._busy == 0 or rows >= self._batch_limit():
            return batch, None
        if self._adaptive is not None:
            waited_ns = time.perf_counter_ns() - min(item.enqueued_ns for item in batch)
            wait_s = self._adaptive.wait_s(rows, waited_ns / 1e9)
            return (batch, None) if wait_s <= 0 else ([], wait_s)
        preferred = [size for size in self._options.preferred_batch_sizes if size <= rows]
        if preferred:
            return _cut(batch, preferred[-1]), None
        waited = time.perf_counter_ns() - min(item.enqueued_ns for item in batch)
        if waited >= self._delay_ns:
            return batch, None
        return [], (self._delay_ns - waited) / 1e9

    def _batch_limit(self) -> int:
        """The most rows of a batch now (0: the model does not batch)."""
        if self._adaptive is not None:
            return self._adaptive.batch_limit
        return self._options.max_batch_size

    def _gather(self, candidates: Iterator[Waiting]) -> list[Waiting]:
        """The first waiting request and those behind it that fit in its batch."""
        head = next(candidates, None)
        if head is None:
            return []
        limit = self._batch_limit()
        if not limit:
            return [head]
        batch, rows = [head], head.rows
        for scanned, item in enumerate(candidates):
            if rows >= limit or scanned >= self._scan_limit:
                break
            if item.key == head.key and rows + item.rows <= limit:
                batch.append(item)
                rows += item.rows
        return batch

    def _launch(self, batch: list[Waiting]) -> None:
        for item in batch:
            self._queue.remove(item)
        self._busy += 1
        loop = asyncio.get_running_loop()
        requests = [item.request for item in batch]
        rows = [item.rows for item in batch]
        running = None
        if self._adaptive is not None:
            running = self._adaptive.started(sum(rows), time.perf_counter())
        done = loop.run_in_executor(self._executor, self._execute, requests, rows)
        done.add_done_callback(partial(self._finished, batch, running))

    # -- execution (on an instance thread) ------------------------------------------------

    def _execute(self, requests: Sequence[InferenceRequest], rows: Sequence[int]) -> _Outcome:
        started = time.perf_counter_ns()
        if len(requests) == 1:
            response = self._predictor.predict(requests[0])
            return _Outcome(started, response, [response.outputs])
        merged = merge(requests)
        merged_at = time.perf_counter_ns()
        response = self._predictor.predict(merged)
        predicted_at = time.perf_counter_ns()
        parts = split(response.outputs, rows)
        return _Outcome(
            started,
            response,
            parts,
            merge_ns=merged_at - started,
            split_ns=time.perf_counter_ns() - predicted_at,
        )

    # -- answering (on the event loop) ----------------------------------------------------

    def _finished(
        self,
        batch: list[Waiting],
        running: RunningBatch | None,
        done: asyncio.Future[_Outcome],
    ) -> None:
        self._busy -= 1
        outcome = None
        try:
            if done.cancelled():
                raise ModelNotReadyError("the model's instance stopped before it ran the batch")
            outcome = done.result()
        except Exception as exc:
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(exc)
        else:
            self._answer(batch, outcome)
        if running is not None and self._adaptive is not None:
            # From launch to answer, on the loop: how long the batch held its instance.
            now = time.perf_counter()
            took = None if outcome is None else now - running.started
            self._adaptive.finished(running, took)
            if outcome is not None:
                self._adaptive.answered(min(item.enqueued_ns for item in batch) / 1e9, now)
        self._dispatch()

    def _answer(self, batch: list[Waiting], outcome: _Outcome) -> None:
        response = outcome.response
        ran = response.timings
        batched = self._options.max_batch_size > 0
        batch_size = sum(item.rows for item in batch) if batched else ran.batch_size
        accounted = False  # one answered request accounts for the execution
        for item, outputs in zip(batch, outcome.parts, strict=True):
            if item.future.done():
                continue
            timings = InferenceTimings(
                queue_ns=outcome.started_ns - item.enqueued_ns,
                compute_input_ns=ran.compute_input_ns + outcome.merge_ns,
                compute_infer_ns=ran.compute_infer_ns,
                compute_output_ns=ran.compute_output_ns + outcome.split_ns,
                batch_size=batch_size,
                queued_at_ns=item.enqueued_ns,
                executions=0 if accounted else 1,
            )
            accounted = True
            if len(batch) == 1:
                response.timings = timings
                item.future.set_result(response)
                continue
            item.future.set_result(
                InferenceResponse(
                    response.model_name,
                    outputs,
                    model_version=response.model_version,
                    parameters=dict(response.parameters),
                    timings=timings,
                )
            )

    async def close(self) -> None:
        """Refuse what still waits, then close the predictor (after the running batches when
        there is one instance) and this servable's own threads."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._queue.fail_all(
            ModelNotReadyError("the model unloaded this version before running the request")
        )
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._predictor.close)
        if self._owns_executor:
            self._executor.shutdown(wait=False)


def _cut(batch: list[Waiting], rows: int) -> list[Waiting]:
    """The first requests of ``batch`` that fit in ``rows`` (at least the first)."""
    cut, total = [batch[0]], batch[0].rows
    for item in batch[1:]:
        if total + item.rows > rows:
            break
        cut.append(item)
        total += item.rows
    return cut
