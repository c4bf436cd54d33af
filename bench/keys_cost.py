"""What keyed predictions cost per request, in-process, through the data plane.

Four variants of one fake model (``EchoPredictor``: y = x, answered inline on the event loop, so
that only serval's own per-request work is measured, no thread hop and no runtime):

- `plain, before`: no keys, built with ``Composition(base, no_layers)`` (the plan before keys);
- `plain, now`: no keys, built with ``app.layer_plan``: it adds no layer, so the servable is
  the same object type and the request path the same code (checked below, then measured);
- `keyed, 1 row` / `keyed, 64 rows`: ``keys: [request_id, {name: customer, datatype:
  INT64}]``, the request carrying both keys.

Each variant runs many short batches in shuffled order; the event loop thread's CPU time per
request (``time.thread_time``) is reported as the 5th and 25th percentiles of the batches (noise
only ever adds time on a shared machine) and the median.

Usage: python bench/keys_cost.py [batches] [requests per batch]
"""

from __future__ import annotations

import asyncio
import random
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from serval.app import layer_plan
from serval.core.composition.keys import KeyedServable
from serval.core.composition.layers import Composition, LayerPlan, no_layers
from serval.core.dataplane import DataPlane, ServerMetadata
from serval.core.events import EventBus
from serval.core.lifecycle.manager import LifecycleManager, ManagerOptions
from serval.core.model_spec import ModelSpec
from serval.core.servable import Predictor, Servable
from serval.core.tensors.datatypes import DataType
from serval.core.types import InferenceRequest, InferenceResponse, ServableMetadata, Tensor
from serval.testing import FakeLoaderFactory, MemorySource

KEYED = {"keys": ["request_id", {"name": "customer", "datatype": "INT64"}]}


class InlineServable:
    """Answers on the calling thread: the base with nothing of its own to measure."""

    def __init__(self, predictor: Predictor) -> None:
        self._predictor = predictor
        self._metadata = predictor.metadata  # kept, as the runtimes keep theirs

    @property
    def metadata(self) -> ServableMetadata:
        return self._metadata

    async def predict(self, request: InferenceRequest) -> InferenceResponse:
        return self._predictor.predict(request)

    def workload(self) -> int:
        return 0

    async def close(self) -> None:
        self._predictor.close()


def inline(predictor: Predictor, spec: ModelSpec) -> Servable:
    return InlineServable(predictor)


def request(rows: int, keyed: bool) -> InferenceRequest:
    inputs = [Tensor("x", DataType.FP32, np.arange(rows, dtype=np.float32))]
    if keyed:
        ids = np.array([f"req-{row}".encode() for row in range(rows)], dtype=np.object_)
        inputs.append(Tensor("request_id", DataType.BYTES, ids))
        inputs.append(Tensor("customer", DataType.INT64, np.arange(rows, dtype=np.int64)))
    return InferenceRequest("m", inputs)


async def build(
    spec: dict[str, Any],
    plan: LayerPlan,
    pool: ThreadPoolExecutor,
    managers: list[LifecycleManager],
) -> DataPlane:
    source = MemorySource()
    source.add_version("m", 1)
    source.set_spec("m", spec)
    manager = LifecycleManager(
        source, FakeLoaderFactory(), Composition(inline, plan), pool, EventBus(), ManagerOptions()
    )
    await manager.start()
    managers.append(manager)
    return DataPlane(manager, EventBus(), ServerMetadata("serval", "bench", ()))


async def batch(plane: DataPlane, make: InferenceRequest, requests: int) -> float:
    """Loop thread CPU µs per request over ``requests`` sequential requests."""
    started = time.thread_time()
    for _ in range(requests):
        # A fresh request each time, as a decoder would make (validation may change it).
        await plane.infer(InferenceRequest(make.model_name, list(make.inputs)))
    return (time.thread_time() - started) / requests * 1e6


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def main(batches: int, requests: int) -> None:
    pool = ThreadPoolExecutor(2)
    managers: list[LifecycleManager] = []
    variants = {
        "plain, before (no_layers)": (
            await build({}, no_layers, pool, managers),
            request(1, False),
        ),
        "plain, now (layer_plan)": (await build({}, layer_plan, pool, managers), request(1, False)),
        "keyed, 1 row": (await build(KEYED, layer_plan, pool, managers), request(1, True)),
        "keyed, 64 rows": (await build(KEYED, layer_plan, pool, managers), request(64, True)),
    }
    plain_now = variants["plain, now (layer_plan)"][0]
    handle = plain_now.lease(InferenceRequest("m", []))
    try:
        servable = handle.servable
    finally:
        handle.release()
    added = "a keys layer!" if isinstance(servable, KeyedServable) else "no layer added"
    print(f"plain model under layer_plan: {type(servable).__name__} ({added})")
    for plane, make in variants.values():  # warm up
        await batch(plane, make, requests)
    samples: dict[str, list[float]] = {name: [] for name in variants}
    order = list(variants)
    for _ in range(batches):
        random.shuffle(order)
        for name in order:
            plane, make = variants[name]
            samples[name].append(await batch(plane, make, requests))
    print(f"{batches} batches x {requests} requests, loop thread CPU per request (µs)")
    print(f"{'variant':<28} {'p5':>7} {'p25':>7} {'median':>7}")
    for name, values in samples.items():
        p5, p25, p50 = (percentile(values, q) for q in (0.05, 0.25, 0.5))
        print(f"{name:<28} {p5:7.2f} {p25:7.2f} {p50:7.2f}")
    for manager in managers:
        await manager.stop()
    pool.shutdown()


if __name__ == "__main__":
    arguments = [int(arg) for arg in sys.argv[1:3]]
    asyncio.run(main(*(arguments + [200, 500][len(arguments) :])))
