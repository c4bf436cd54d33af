"""The scheduling rule (docs/batching.md#the-scheduling-rule): which batch runs now, or how long
to wait for more requests. Applied while an instance is free and requests wait:

1. The batch starts from the first request of the highest priority level (1 first, arrival
   order within a level) and takes the requests behind it that can share its batch
   (``batch_assembly.batch_key``), up to ``max_batch_size`` rows.
2. It runs at once if no instance is busy (a lone request on an idle model never waits), or it
   has reached ``max_batch_size`` rows, or a preferred batch size (it is then cut to the
   largest preferred size reached), or its oldest request has waited ``max_queue_delay``.
3. Otherwise it waits for more requests, at most until that delay ends.

In adaptive mode the ``AdaptivePolicy`` sets the batch limit and the wait instead of
``max_queue_delay`` and the preferred sizes. Decisions only: nothing here runs or awaits.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import closing

from serval.core.batching.adaptive import AdaptivePolicy
from serval.core.batching.options import BatchingOptions
from serval.core.batching.request_queue import RequestQueue, Waiting

# How many waiting requests one batch looks through for partners of its first request.
_MIN_SCAN = 64


class SchedulingRule:
    """The rule over ``queue``; ``adaptive`` is the policy in adaptive mode, else None."""

    def __init__(
        self, queue: RequestQueue, options: BatchingOptions, adaptive: AdaptivePolicy | None
    ) -> None:
        self._queue = queue
        self._options = options
        self._adaptive = adaptive
        self._scan_limit = max(_MIN_SCAN, 4 * options.max_batch_size)
        self._delay_ns = int(options.max_queue_delay_s * 1e9)

    def next_batch(self, busy: int) -> tuple[list[Waiting], float | None]:
        """The batch to run now, with ``busy`` instances running, or none and how long to wait
        for more requests (None: nothing to wait for)."""
        with closing(self._queue.candidates(time.monotonic())) as candidates:
            batch = self._gather(candidates)
        if not batch or not self._options.max_batch_size:
            return batch, None  # nothing waits, or the model does not batch: it runs alone
        rows = sum(item.rows for item in batch)
        if busy == 0 or rows >= self.batch_limit():
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

    def batch_limit(self) -> int:
        """The most rows of a batch now (0: the model does not batch)."""
        if self._adaptive is not None:
            return self._adaptive.batch_limit
        return self._options.max_batch_size

    def _gather(self, candidates: Iterator[Waiting]) -> list[Waiting]:
        """The first waiting request and those behind it that fit in its batch."""
        head = next(candidates, None)
        if head is None:
            return []
        limit = self.batch_limit()
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


def _cut(batch: list[Waiting], rows: int) -> list[Waiting]:
    """The first requests of ``batch`` that fit in ``rows`` (at least the first)."""
    cut, total = [batch[0]], batch[0].rows
    for item in batch[1:]:
        if total + item.rows > rows:
            break
        cut.append(item)
        total += item.rows
    return cut
