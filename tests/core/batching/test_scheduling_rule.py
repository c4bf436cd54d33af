"""SchedulingRule: which batch runs now, or how long to wait for more (docs/batching.md#the-
scheduling-rule). Decisions only, on a queue filled by hand."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Hashable, Iterator

import numpy as np
import pytest

from serval.core.batching.adaptive import AdaptivePolicy
from serval.core.batching.options import BatchingOptions
from serval.core.batching.request_queue import RequestQueue, Waiting
from serval.core.batching.scheduling_rule import SchedulingRule
from serval.core.tensors.datatypes import DataType
from serval.core.types import InferenceRequest, InferenceResponse, Tensor

LONG_AGO_NS = 0  # perf_counter_ns() far in the past: any delay has passed


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


class Queue:
    """A RequestQueue with a helper to add requests of given rows, keys and priorities."""

    def __init__(self, loop: asyncio.AbstractEventLoop, levels: int = 0) -> None:
        self.loop = loop
        self.queue = RequestQueue(levels)
        self.count = 0

    def add(
        self,
        rows: int = 1,
        *,
        key: Hashable = "a",
        priority: int = 0,
        enqueued_ns: int | None = None,
    ) -> Waiting:
        self.count += 1
        data = np.full((max(rows, 1), 1), self.count, np.float32)
        request = InferenceRequest("m", [Tensor("x", DataType.FP32, data)], priority=priority)
        future: asyncio.Future[InferenceResponse] = self.loop.create_future()
        enqueued = time.perf_counter_ns() if enqueued_ns is None else enqueued_ns
        item = Waiting(request, future, rows, key, enqueued)
        self.queue.push(item, self.queue.level(request))
        return item


def rule(queue: Queue, adaptive: AdaptivePolicy | None = None, **options: object) -> SchedulingRule:
    return SchedulingRule(queue.queue, BatchingOptions(**options), adaptive)  # type: ignore[arg-type]


def test_nothing_waiting_means_nothing_to_run_or_wait_for(
    loop: asyncio.AbstractEventLoop,
) -> None:
    assert rule(Queue(loop), max_batch_size=8).next_batch(busy=0) == ([], None)


def test_a_model_that_does_not_batch_runs_each_request_alone(
    loop: asyncio.AbstractEventLoop,
) -> None:
    queue = Queue(loop)
    first, _ = queue.add(0), queue.add(0)
    the_rule = rule(queue, max_batch_size=0, max_queue_delay_s=10.0)
    assert the_rule.batch_limit() == 0
    assert the_rule.next_batch(busy=1) == ([first], None)  # even with an instance busy


def test_on_an_idle_model_a_lone_request_never_waits(loop: asyncio.AbstractEventLoop) -> None:
    queue = Queue(loop)
    item = queue.add(1)
    batch, wait = rule(queue, max_batch_size=8, max_queue_delay_s=10.0).next_batch(busy=0)
    assert (batch, wait) == ([item], None)


def test_while_an_instance_is_busy_a_small_batch_waits_until_the_delay_ends(
    loop: asyncio.AbstractEventLoop,
) -> None:
    queue = Queue(loop)
    queue.add(1)
    batch, wait = rule(queue, max_batch_size=8, max_queue_delay_s=10.0).next_batch(busy=1)
    assert batch == []
    assert wait is not None and 9.0 < wait <= 10.0


def test_a_batch_whose_oldest_request_waited_the_delay_runs(
    loop: asyncio.AbstractEventLoop,
) -> None:
    queue = Queue(loop)
    old = queue.add(1, enqueued_ns=LONG_AGO_NS)
    new = queue.add(2)
    batch, wait = rule(queue, max_batch_size=8, max_queue_delay_s=0.5).next_batch(busy=1)
    assert (batch, wait) == ([old, new], None)


def test_a_full_batch_runs_at_once(loop: asyncio.AbstractEventLoop) -> None:
    queue = Queue(loop)
    items = [queue.add(2) for _ in range(5)]
    batch, wait = rule(queue, max_batch_size=8, max_queue_delay_s=10.0).next_batch(busy=1)
    assert (batch, wait) == (items[:4], None)  # 8 rows; the fifth waits for the next batch


def test_requests_too_large_for_what_is_left_are_passed_over(
    loop: asyncio.AbstractEventLoop,
) -> None:
    queue = Queue(loop)
    first, big, small = queue.add(5), queue.add(4), queue.add(3)
    batch, _ = rule(queue, max_batch_size=8).next_batch(busy=0)
    assert batch == [first, small]  # 5 + 4 > 8; 5 + 3 fits
    assert big.queued


def test_only_requests_with_the_first_ones_key_share_its_batch(
    loop: asyncio.AbstractEventLoop,
) -> None:
    queue = Queue(loop)
    a1, _, a2, _ = queue.add(key="a"), queue.add(key="b"), queue.add(key="a"), queue.add(key="b")
    assert rule(queue, max_batch_size=8).next_batch(busy=0) == ([a1, a2], None)


def test_the_highest_priority_level_starts_the_batch(loop: asyncio.AbstractEventLoop) -> None:
    queue = Queue(loop, levels=2)
    low = queue.add(priority=2)
    high = queue.add(priority=1)
    other_key = queue.add(priority=1, key="b")
    batch, _ = rule(queue, max_batch_size=8, priority_levels=2).next_batch(busy=0)
    assert batch == [high, low]
    assert other_key not in batch


def test_a_preferred_size_reached_runs_cut_to_it(loop: asyncio.AbstractEventLoop) -> None:
    queue = Queue(loop)
    items = [queue.add(1) for _ in range(5)]
    the_rule = rule(
        queue, max_batch_size=8, max_queue_delay_s=10.0, preferred_batch_sizes=(2, 4, 6)
    )
    assert the_rule.next_batch(busy=1) == (items[:4], None)  # 5 rows: cut to 4


def test_a_cut_keeps_at_least_the_first_request(loop: asyncio.AbstractEventLoop) -> None:
    queue = Queue(loop)
    first, second = queue.add(3), queue.add(1)
    the_rule = rule(queue, max_batch_size=8, max_queue_delay_s=10.0, preferred_batch_sizes=(2,))
    assert the_rule.next_batch(busy=1) == ([first], None)
    assert second.queued  # still waiting: next_batch decides, it takes nothing


def test_the_scan_for_partners_is_bounded(loop: asyncio.AbstractEventLoop) -> None:
    queue = Queue(loop)
    head = queue.add(key="a")
    for _ in range(64):
        queue.add(key="b")
    late_partner = queue.add(key="a")
    batch, _ = rule(queue, max_batch_size=8).next_batch(busy=0)
    assert batch == [head]  # 64 non-partners scanned: the next one is not looked at
    assert late_partner.queued


def test_adaptive_mode_uses_the_policy_limit_and_wait(loop: asyncio.AbstractEventLoop) -> None:
    policy = AdaptivePolicy(latency_slo_s=0.1, max_batch_size=64)
    for rows in (1, 2, 4, 8) * 4:  # 5 ms + 1 ms per row: at most 45 rows in 50 ms
        policy.cost_model.observe(rows, 0.005 + 0.001 * rows)
    policy._refresh_limit()
    queue = Queue(loop)
    the_rule = rule(queue, policy, max_batch_size=64, latency_slo_s=0.1)
    assert 0 < the_rule.batch_limit() <= 45
    first = queue.add(1)
    # No arrival gap known yet: nothing to wait for, it runs.
    assert the_rule.next_batch(busy=1) == ([first], None)
    policy.admit("m", 1, 0, now=0.0)
    policy.admit("m", 1, 0, now=0.001)  # a request every millisecond
    batch, wait = the_rule.next_batch(busy=1)
    assert batch == [] and wait is not None and 0 < wait < 0.05
