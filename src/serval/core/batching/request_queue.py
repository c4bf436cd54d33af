"""The queue of a scheduled model: waiting requests by priority level, in arrival order within
a level. Used on the event loop only.

Requests leave lazily: one taken into a batch, abandoned by its caller or past its deadline is
marked and skipped, and its entry is dropped when it reaches the front or at ``compact()``. So
taking requests from the middle of the queue (those that fit a batch) costs O(1) each.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Generator, Hashable

from serval.core.deadlines import expired_error
from serval.core.errors import InvalidInputError, ServalError
from serval.core.types import InferenceRequest, InferenceResponse

# Entries of requests that left, tolerated beyond twice the waiting ones before compacting.
_SLACK = 64


class Waiting:
    """A request in the queue; ``queued`` turns false once it is taken, dropped or gone."""

    __slots__ = ("enqueued_ns", "future", "key", "level", "queued", "request", "rows")

    def __init__(
        self,
        request: InferenceRequest,
        future: asyncio.Future[InferenceResponse],
        rows: int,
        key: Hashable,
        enqueued_ns: int,
    ) -> None:
        self.request = request
        self.future = future
        self.rows = rows  # the first dimension of its inputs (0 when the model does not batch)
        self.key = key  # requests with equal keys may share a batch
        self.enqueued_ns = enqueued_ns  # time.perf_counter_ns()
        self.level = 0  # the index of its priority level, set by push
        self.queued = True


class RequestQueue:
    """``levels`` priority levels (0: one level, priorities ignored); a request's priority 0
    means ``default_level`` (0: the lowest level)."""

    def __init__(self, levels: int = 0, default_level: int = 0) -> None:
        self._levels = levels
        self._default = (default_level or levels) - 1
        self._queues: list[deque[Waiting]] = [deque() for _ in range(max(1, levels))]
        self._rows = [0] * max(1, levels)  # rows waiting at each level
        self._waiting = 0

    def __len__(self) -> int:
        """Requests waiting (taken, dropped and abandoned ones are not counted)."""
        return self._waiting

    def level(self, request: InferenceRequest) -> int:
        """The index of ``request``'s level; raises ``InvalidInputError`` for a priority the
        model does not have."""
        priority = request.priority
        if priority < 0:
            raise InvalidInputError(f"priority must be 0 or more, received {priority}")
        if not self._levels:
            return 0  # the model does not use priorities
        if priority > self._levels:
            raise InvalidInputError(
                f"priority {priority} is not a level of model {request.model_name!r}: "
                f"1 (highest) to {self._levels}, or 0 for the default"
            )
        return self._default if priority == 0 else priority - 1

    def rows_through(self, level: int) -> int:
        """Rows waiting at level ``level`` and the levels above it (those that run first)."""
        return sum(self._rows[: level + 1])

    def push(self, item: Waiting, level: int) -> None:
        item.level = level
        self._queues[level].append(item)
        self._rows[level] += item.rows
        self._waiting += 1

    def remove(self, item: Waiting) -> None:
        """Mark ``item`` as gone from the queue (taken into a batch, or abandoned)."""
        if item.queued:
            item.queued = False
            self._rows[item.level] -= item.rows
            self._waiting -= 1

    def candidates(self, now: float) -> Generator[Waiting, None, None]:
        """Waiting requests in priority order. Fails those past their deadline at ``now``
        (``time.monotonic()``) and skips those whose caller gave up. Do not push or compact
        while the generator is open."""
        for queue in self._queues:
            while queue and not self._alive(queue[0], now):
                queue.popleft()
            for item in queue:
                if self._alive(item, now):
                    yield item

    def _alive(self, item: Waiting, now: float) -> bool:
        if not item.queued:
            return False
        if item.future.done():  # cancelled: the caller gave up
            self.remove(item)
            return False
        deadline = item.request.deadline
        if deadline is not None and now >= deadline:
            self.remove(item)
            item.future.set_exception(expired_error(item.request))
            return False
        return True

    def compact(self) -> None:
        """Drop the entries of requests that left once they outnumber the waiting ones."""
        entries = sum(len(queue) for queue in self._queues)
        if entries > 2 * self._waiting + _SLACK:
            self._queues = [deque(i for i in queue if i.queued) for queue in self._queues]

    def fail_all(self, error: ServalError) -> None:
        """Answer every waiting request with ``error`` and empty the queue."""
        for queue in self._queues:
            for item in queue:
                if item.queued and not item.future.done():
                    item.future.set_exception(error)
                self.remove(item)
            queue.clear()
