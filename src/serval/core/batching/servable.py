"""Dynamic batching: a queue in front of a ``Predictor`` that merges concurrent requests.

A request is admitted into the model's queue (``request_queue``) or refused at once: the
version is unloading, it is past its deadline, the queue is full, or in adaptive mode it would
miss the latency target. Whenever a request arrives, a batch finishes or a delay ends, the
scheduling rule (``scheduling_rule``) picks the batches to run while an instance is free, and
each runs as one hop to an instance thread (``instances``).

So batches form while instances are busy: the requests that arrive during a running batch make
up the next one. With ``max_batch_size`` 0 every request runs alone, with the same queue,
priorities and deadlines.

In adaptive mode (``latency_slo_s``), an ``AdaptivePolicy`` (``core.adaptive``) replaces
``max_queue_delay`` and the preferred sizes. It learns from the batches this servable runs,
so the servable reports each batch's start and end to it.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import Executor
from functools import partial

from serval.core.batching.adaptive import AdaptivePolicy, RunningBatch
from serval.core.batching.assembly import batch_key, batch_rows
from serval.core.batching.instances import InstancePool, Outcome, answer
from serval.core.batching.options import BatchingOptions
from serval.core.batching.request_queue import RequestQueue, Waiting
from serval.core.batching.scheduling_rule import SchedulingRule
from serval.core.deadlines import raise_if_expired
from serval.core.errors import ModelNotReadyError, OverloadedError
from serval.core.servable import Predictor, QueuedRequest
from serval.core.types import InferenceRequest, InferenceResponse, ServableMetadata

__all__ = ["BatchingOptions", "BatchingServable"]


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
        self._instances = InstancePool(predictor, options.instances, executor)
        self._queue = RequestQueue(options.priority_levels, options.default_priority_level)
        self._rule = SchedulingRule(self._queue, options, adaptive)
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False

    @property
    def metadata(self) -> ServableMetadata:
        return self._predictor.metadata

    @property
    def waiting(self) -> int:
        """Requests in the queue, not yet in a batch."""
        return len(self._queue)

    def workload(self) -> int:
        return len(self._queue)

    @property
    def busy(self) -> int:
        """Instances running a batch now."""
        return self._instances.busy

    @property
    def adaptive(self) -> AdaptivePolicy | None:
        """The adaptive batching policy, or None with the fixed rule."""
        return self._adaptive

    async def predict(self, request: InferenceRequest) -> InferenceResponse:
        item = self.submit(request)
        try:
            return await item.future
        finally:
            self._queue.remove(item)  # the caller gave up while it waited (a deadline, a hang-up)

    def submit(self, request: InferenceRequest) -> Waiting:
        """Queue ``request`` now and return its entry (``SubmittingServable``): ``predict``
        without the await, for a caller that starts several calls before awaiting them.
        Await ``entry.future``, then ``withdraw(entry)``."""
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
        return item

    def withdraw(self, entry: QueuedRequest) -> None:
        """Take ``entry`` (from ``submit``) out of the queue if it still waits there."""
        entry.future.cancel()  # a no-op once answered
        if isinstance(entry, Waiting):
            self._queue.remove(entry)

    # -- on the event loop ----------------------------------------------------------------

    def _dispatch(self) -> None:
        """Start the batches the rule picks while an instance is free, or set a timer."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        launched = False
        while self._instances.free and self._queue:
            batch, wait_s = self._rule.next_batch(self._instances.busy)
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

    def _launch(self, batch: list[Waiting]) -> None:
        for item in batch:
            self._queue.remove(item)
        rows = [item.rows for item in batch]
        running = None
        if self._adaptive is not None:
            running = self._adaptive.started(sum(rows), time.perf_counter())
        requests = [item.request for item in batch]
        self._instances.run(requests, rows, partial(self._finished, batch, running))

    def _finished(
        self,
        batch: list[Waiting],
        running: RunningBatch | None,
        done: asyncio.Future[Outcome],
    ) -> None:
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
            answer(batch, outcome, batched=self._options.max_batch_size > 0)
        if running is not None and self._adaptive is not None:
            # From launch to answer, on the loop: how long the batch held its instance.
            now = time.perf_counter()
            took = None if outcome is None else now - running.started
            self._adaptive.finished(running, took)
            if outcome is not None:
                self._adaptive.answered(min(item.enqueued_ns for item in batch) / 1e9, now)
        self._dispatch()

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
        await self._instances.close()
