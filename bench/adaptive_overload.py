"""Adaptive batching overloaded: the latencies a model with a known cost sees when offered
more than it can serve (the measurement that tests/core/batching/test_adaptive.py once
asserted; timing belongs here, the test asserts what is deterministic).

A fake model sleeps 5 ms + 1 ms per row; the latency target is 100 ms (batches of up to about
45 rows, some 900 rows/s per instance); one-row requests arrive at 2,000/s for 1.5 s. Without
shedding, the queue would grow for the whole run and p99 would pass 1 s; with it, p99 stays
near the target (95 to 117 ms measured on 2 cores with a load average of 5, 2026-11).

Usage: python bench/adaptive_overload.py [instances ...]   (default: 1 2)
"""

from __future__ import annotations

import asyncio
import gc
import sys
import time

import numpy as np

from serval.core.batching.servable import BatchingOptions, BatchingServable
from serval.core.errors import OverloadedError
from serval.core.tensors.datatypes import DataType
from serval.core.types import (
    InferenceRequest,
    InferenceResponse,
    ServableMetadata,
    Tensor,
    TensorSpec,
)

FP32 = DataType.FP32
SLO_S = 0.1
OFFERED_PER_S = 2000
DURATION_S = 1.5


class SleepingPredictor:
    """y = x, after sleeping 5 ms + 1 ms per row."""

    metadata = ServableMetadata(
        "fake", (TensorSpec("x", FP32, (-1, 1)),), (TensorSpec("y", FP32, (-1, 1)),)
    )

    def predict(self, request: InferenceRequest) -> InferenceResponse:
        x = request.inputs[0].data
        time.sleep(0.005 + 0.001 * x.shape[0])
        return InferenceResponse(request.model_name, [Tensor("y", FP32, x.copy())])

    def close(self) -> None:
        pass


async def overload(instances: int) -> tuple[list[float], int, int]:
    """(latencies of the answered requests, refused, offered)."""
    options = BatchingOptions(max_batch_size=64, instances=instances, latency_slo_s=SLO_S)
    batching = BatchingServable(SleepingPredictor(), options)
    latencies: list[float] = []
    refused = 0

    async def one() -> None:
        nonlocal refused
        x = np.ones((1, 1), np.float32)
        started = time.perf_counter()
        try:
            await batching.predict(InferenceRequest("m", [Tensor("x", FP32, x)]))
        except OverloadedError:
            refused += 1
            return
        latencies.append(time.perf_counter() - started)

    tasks = []
    burst = 10
    start = time.perf_counter()
    while time.perf_counter() - start < DURATION_S:
        tasks.extend(asyncio.ensure_future(one()) for _ in range(burst))
        await asyncio.sleep(burst / OFFERED_PER_S)
    await asyncio.gather(*tasks)
    await batching.close()
    return latencies, refused, len(tasks)


def main(counts: list[int]) -> None:
    print("| instances | offered | refused | p50 | p99 | target |")
    print("|---|---|---|---|---|---|")
    for instances in counts:
        gc.disable()  # a full collection pauses the process for tens of ms
        try:
            latencies, refused, offered = asyncio.run(overload(instances))
        finally:
            gc.enable()
        p50, p99 = (float(q) * 1e3 for q in np.quantile(latencies, [0.5, 0.99]))
        print(
            f"| {instances} | {offered} | {refused} | {p50:.1f} ms | {p99:.1f} ms | "
            f"{SLO_S * 1e3:.0f} ms |"
        )


if __name__ == "__main__":
    main([int(arg) for arg in sys.argv[1:]] or [1, 2])
