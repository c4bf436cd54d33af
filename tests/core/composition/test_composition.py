"""Composition: layers around a base, the workload seen through them, and models that lease
other models through the provider (load order, readiness, waking up)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

from serval.core.batching.servable import BatchingOptions, BatchingServable
from serval.core.composition.layers import Layer
from serval.core.composition.provider import ServableProvider
from serval.core.composition.wrapper import WrappingServable
from serval.core.lifecycle.handles import Workload
from serval.core.lifecycle.states import ServableId, ServableState
from serval.core.model_spec import ModelSpec
from serval.core.servable import Predictor, Servable
from serval.core.types import InferenceRequest, InferenceResponse
from serval.testing import EchoPredictor
from tests.core.fakes import Harness, predict


class NeedsBase(ModelSpec):
    """A composite model's spec: it needs model ``base`` (as a pipeline step would)."""

    def dependencies(self) -> tuple[str, ...]:
        return ("base",)


class Tagged(WrappingServable):
    """A layer that records the order layers were applied in."""

    __slots__ = ("tag",)

    def __init__(self, inner: Servable, tag: str) -> None:
        super().__init__(inner)
        self.tag = tag


class ThroughBase(WrappingServable):
    """A composite servable: answers by leasing model ``base`` through the provider."""

    __slots__ = ("provider",)

    def __init__(self, inner: Servable, provider: ServableProvider) -> None:
        super().__init__(inner)
        self.provider = provider

    async def predict(self, request: InferenceRequest) -> InferenceResponse:
        async with self.provider.lease("base") as lease:
            return await lease.servable.predict(request)


def plan(spec: ModelSpec, provider: ServableProvider, id: ServableId) -> Sequence[Layer]:
    layers: list[Layer] = [lambda s, _: Tagged(s, "inner"), lambda s, _: Tagged(s, "outer")]
    if spec.dependencies():
        layers.append(lambda s, _: ThroughBase(s, provider))
    return layers


def test_layers_wrap_innermost_first_and_the_workload_shows_through() -> None:
    gate = threading.Event()

    def batching(predictor: Predictor, spec: ModelSpec) -> Servable:
        return BatchingServable(predictor, BatchingOptions(instances=1))

    h = Harness(plan, base=batching)
    h.source.add_version("m", 1)
    h.loaders.predictors[("m", 1)] = EchoPredictor(gate=gate)

    async def test(h: Harness) -> None:
        await h.manager.start()
        async with h.manager.lease("m") as handle:
            outer = handle.servable
        assert isinstance(outer, Tagged) and outer.tag == "outer"
        assert isinstance(outer.inner, Tagged) and outer.inner.tag == "inner"
        assert isinstance(outer.inner.inner, BatchingServable)
        calls = [asyncio.create_task(predict(h.manager, "m")) for _ in range(3)]
        m1 = ServableId("m", 1)
        # One runs on the instance, two wait in the queue under two layers.
        for _ in range(500):
            if h.manager.workload()[m1] == Workload(inflight=3, waiting=2):
                break
            await asyncio.sleep(0.01)
        assert h.manager.workload()[m1] == Workload(inflight=3, waiting=2)
        gate.set()
        assert await asyncio.gather(*calls) == [1, 1, 1]

    h.run(test)


def test_a_model_that_needs_another_waits_for_it_and_says_so() -> None:
    h = Harness(plan)
    h.source.add_version("pipe", 1)
    h.source.set_spec("pipe", NeedsBase())

    async def test(h: Harness) -> None:
        await h.manager.start()
        assert h.serving("pipe") == []
        assert ("pipe", 1) not in h.loaders.loaded  # not even tried
        ready, reason = h.manager.readiness()
        assert not ready
        assert "model 'pipe': waiting for model 'base' to be available" in reason
        assert h.manager.model_ready("pipe") is False
        (row,) = await h.manager.index()
        assert (row.version, row.state) == (None, ServableState.START)
        assert "waiting for model 'base'" in row.reason
        # The model it needs appears: it loads, and wakes the model that waited.
        h.source.add_version("base", 1)
        await h.sync()
        assert h.serving("base") == [1]
        assert h.serving("pipe") == [1]
        assert h.manager.readiness() == (True, "")
        assert h.manager.model_ready("pipe")
        # A call to pipe goes through base's own servable, under a lease of its own.
        await predict(h.manager, "pipe")
        assert h.loaders.predictors[("base", 1)].calls == 1
        assert h.loaders.predictors[("pipe", 1)].calls == 0

    h.run(test)


def test_dependencies_load_first_at_start() -> None:
    h = Harness(plan)
    h.source.add_version("pipe", 1)
    h.source.set_spec("pipe", NeedsBase())
    h.source.add_version("base", 1)

    async def test(h: Harness) -> None:
        await h.manager.start()  # returns once the waiting model has loaded too
        assert h.manager.readiness() == (True, "")
        order = [(e.id.name, e.state) for e in h.events]
        assert order.index(("base", ServableState.AVAILABLE)) < order.index(
            ("pipe", ServableState.LOADING)
        )

    h.run(test)


def test_a_missing_dependency_makes_a_serving_model_not_ready() -> None:
    h = Harness(plan)
    h.source.add_version("pipe", 1)
    h.source.set_spec("pipe", NeedsBase())
    h.source.add_version("base", 1)

    async def test(h: Harness) -> None:
        await h.manager.start()
        await h.manager.unload("base")
        assert h.serving("pipe") == [1]  # what serves keeps serving
        assert h.manager.model_ready("pipe") is False
        assert "waiting for model 'base'" in h.manager.readiness()[1]
        await h.manager.load("base")
        assert h.manager.readiness() == (True, "")

    h.run(test)
