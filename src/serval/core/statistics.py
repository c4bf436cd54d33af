"""Per-version inference statistics, as Triton's statistics extension reports them.

They are fed by the request records (``core.records.record_statistics``, which the data plane
subscribes to the event bus), one per request, like metrics and tracing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from serval.core.timings import CACHE_HIT, CACHE_MISS, InferenceTimings


@dataclass(slots=True)
class Duration:
    count: int = 0
    ns: int = 0

    def add(self, ns: int, count: int = 1) -> None:
        self.count += count
        self.ns += ns


@dataclass(slots=True)
class BatchStatistics:
    compute_input: Duration = field(default_factory=Duration)
    compute_infer: Duration = field(default_factory=Duration)
    compute_output: Duration = field(default_factory=Duration)


@dataclass(slots=True)
class VersionStatistics:
    """Cumulative counts and durations for one model version since it was first loaded."""

    name: str
    version: int
    last_inference_ms: int = 0
    inference_count: int = 0  # rows (batch elements) inferred
    execution_count: int = 0  # model executions
    success: Duration = field(default_factory=Duration)
    fail: Duration = field(default_factory=Duration)
    queue: Duration = field(default_factory=Duration)
    compute_input: Duration = field(default_factory=Duration)
    compute_infer: Duration = field(default_factory=Duration)
    compute_output: Duration = field(default_factory=Duration)
    cache_hit: Duration = field(default_factory=Duration)
    cache_miss: Duration = field(default_factory=Duration)
    batches: dict[int, BatchStatistics] = field(default_factory=dict)

    def record_success(self, duration_ns: int, timings: InferenceTimings, rows: int) -> None:
        self.last_inference_ms = time.time_ns() // 1_000_000
        # Duration.add inlined: this runs for every request and every composite step.
        success, queue = self.success, self.queue
        success.count += 1
        success.ns += duration_ns
        self.inference_count += rows
        if timings.cache:
            if timings.cache == CACHE_HIT:  # as Triton: nothing queued or computed
                self.cache_hit.add(timings.cache_ns)
                return
            if timings.cache == CACHE_MISS:
                self.cache_miss.add(timings.cache_ns)
        # Per request, as Triton: each request of a batch is charged the batch's compute time.
        queue.count += 1
        queue.ns += timings.queue_ns
        compute = self.compute_input
        compute.count += 1
        compute.ns += timings.compute_input_ns
        compute = self.compute_infer
        compute.count += 1
        compute.ns += timings.compute_infer_ns
        compute = self.compute_output
        compute.count += 1
        compute.ns += timings.compute_output_ns
        if not timings.executions:
            return  # another request of the same batch accounts for the execution
        # Per execution, keyed by the rows the model ran at once.
        self.execution_count += timings.executions
        batch = self.batches.get(timings.batch_size)
        if batch is None:
            batch = self.batches[timings.batch_size] = BatchStatistics()
        batch.compute_input.add(timings.compute_input_ns, timings.executions)
        batch.compute_infer.add(timings.compute_infer_ns, timings.executions)
        batch.compute_output.add(timings.compute_output_ns, timings.executions)

    def record_failure(self, duration_ns: int) -> None:
        self.last_inference_ms = time.time_ns() // 1_000_000
        self.fail.add(duration_ns)
