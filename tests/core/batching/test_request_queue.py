"""RequestQueue: priority levels, arrival order within a level, requests that leave (taken,
abandoned, past their deadline) and compaction."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import numpy as np
import pytest

from serval.core.batching.request_queue import RequestQueue, Waiting
from serval.core.errors import DeadlineExceededError, InvalidInputError, ModelNotReadyError
from serval.core.tensors.datatypes import DataType
from serval.core.types import InferenceRequest, InferenceResponse, Tensor

NOW = 1000.0


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def request(
    value: float = 0.0, priority: int = 0, deadline: float | None = None
) -> InferenceRequest:
    data = np.full((1, 1), value, np.float32)
    return InferenceRequest(
        "m", [Tensor("x", DataType.FP32, data)], priority=priority, deadline=deadline
    )


def waiting(
    loop: asyncio.AbstractEventLoop,
    value: float = 0.0,
    *,
    rows: int = 1,
    priority: int = 0,
    deadline: float | None = None,
) -> Waiting:
    future: asyncio.Future[InferenceResponse] = loop.create_future()
    return Waiting(request(value, priority, deadline), future, rows, "key", 0)


def values(queue: RequestQueue, now: float = NOW) -> list[float]:
    return [float(item.request.inputs[0].data[0, 0]) for item in queue.candidates(now)]


def fill(loop: asyncio.AbstractEventLoop, queue: RequestQueue, *items: Waiting) -> None:
    for item in items:
        queue.push(item, queue.level(item.request))


# -- levels -----------------------------------------------------------------------------------


def test_without_levels_every_priority_is_one_level_in_arrival_order(
    loop: asyncio.AbstractEventLoop,
) -> None:
    queue = RequestQueue()
    fill(loop, queue, *(waiting(loop, v, priority=p) for v, p in [(1, 3), (2, 0), (3, 1)]))
    assert values(queue) == [1.0, 2.0, 3.0]
    assert len(queue) == 3


def test_levels_order_by_priority_then_arrival(loop: asyncio.AbstractEventLoop) -> None:
    queue = RequestQueue(levels=3)
    # priority 0 is the default level: the lowest (3) when default_level is 0.
    order = [(1.0, 3), (2.0, 0), (3.0, 1), (4.0, 2), (5.0, 1)]
    fill(loop, queue, *(waiting(loop, v, priority=p) for v, p in order))
    assert values(queue) == [3.0, 5.0, 4.0, 1.0, 2.0]


def test_the_default_level_takes_priority_zero(loop: asyncio.AbstractEventLoop) -> None:
    queue = RequestQueue(levels=3, default_level=1)
    assert queue.level(request(priority=0)) == 0
    assert queue.level(request(priority=2)) == 1
    fill(loop, queue, waiting(loop, 1.0, priority=2), waiting(loop, 2.0, priority=0))
    assert values(queue) == [2.0, 1.0]


@pytest.mark.parametrize("levels", [0, 2])
def test_a_negative_priority_is_refused(levels: int) -> None:
    with pytest.raises(InvalidInputError, match="priority must be 0 or more, received -1"):
        RequestQueue(levels=levels).level(request(priority=-1))


def test_a_priority_beyond_the_levels_names_them() -> None:
    with pytest.raises(InvalidInputError) as caught:
        RequestQueue(levels=2).level(request(priority=3))
    assert caught.value.message == (
        "priority 3 is not a level of model 'm': 1 (highest) to 2, or 0 for the default"
    )


def test_rows_through_counts_a_level_and_those_above(loop: asyncio.AbstractEventLoop) -> None:
    queue = RequestQueue(levels=3)
    fill(
        loop,
        queue,
        waiting(loop, rows=4, priority=1),
        waiting(loop, rows=2, priority=2),
        waiting(loop, rows=1, priority=3),
        waiting(loop, rows=8, priority=2),
    )
    assert [queue.rows_through(level) for level in range(3)] == [4, 14, 15]


# -- requests that leave ----------------------------------------------------------------------


def test_removed_requests_are_skipped_and_counted_once(loop: asyncio.AbstractEventLoop) -> None:
    queue = RequestQueue()
    items = [waiting(loop, v, rows=2) for v in (1.0, 2.0, 3.0)]
    fill(loop, queue, *items)
    queue.remove(items[1])
    queue.remove(items[1])  # twice: no effect
    assert values(queue) == [1.0, 3.0]
    assert len(queue) == 2
    assert queue.rows_through(0) == 4
    assert not items[1].queued


def test_an_abandoned_request_leaves_at_the_next_look(loop: asyncio.AbstractEventLoop) -> None:
    queue = RequestQueue()
    gone, kept = waiting(loop, 1.0), waiting(loop, 2.0)
    fill(loop, queue, gone, kept)
    gone.future.cancel()  # the caller gave up
    assert len(queue) == 2  # not yet looked at
    assert values(queue) == [2.0]
    assert len(queue) == 1


def test_a_request_past_its_deadline_is_answered_and_leaves(
    loop: asyncio.AbstractEventLoop,
) -> None:
    queue = RequestQueue()
    late = waiting(loop, 1.0, deadline=NOW)
    on_time = waiting(loop, 2.0, deadline=NOW + 1)
    fill(loop, queue, late, on_time)
    assert values(queue, now=NOW) == [2.0]  # a deadline at `now` has passed
    with pytest.raises(DeadlineExceededError, match="passed before the model ran it"):
        late.future.result()
    assert len(queue) == 1
    assert values(queue, now=NOW + 1) == []
    assert isinstance(on_time.future.exception(), DeadlineExceededError)
    assert len(queue) == 0


def test_compact_drops_left_entries_once_they_outnumber_the_waiting_ones(
    loop: asyncio.AbstractEventLoop,
) -> None:
    queue = RequestQueue()
    items = [waiting(loop, float(v)) for v in range(200)]
    fill(loop, queue, *items)
    for item in items[1:130]:  # taken from the middle: their entries stay
        queue.remove(item)
    queue.compact()
    assert sum(len(q) for q in queue._queues) == 200  # 200 entries <= 2 * 71 waiting + 64
    for item in items[130:190]:
        queue.remove(item)
    queue.compact()
    assert sum(len(q) for q in queue._queues) == 11  # only the waiting ones remain
    assert values(queue) == [0.0, *map(float, range(190, 200))]


def test_fail_all_answers_every_waiting_request(loop: asyncio.AbstractEventLoop) -> None:
    queue = RequestQueue(levels=2)
    items = [waiting(loop, float(v), priority=1 + v % 2) for v in range(4)]
    fill(loop, queue, *items)
    queue.remove(items[0])  # taken into a batch before: not answered here
    items[1].future.cancel()
    queue.fail_all(ModelNotReadyError("closing"))
    assert len(queue) == 0 and values(queue) == []
    assert not items[0].future.done()
    assert items[1].future.cancelled()
    for item in items[2:]:
        assert isinstance(item.future.exception(), ModelNotReadyError)
