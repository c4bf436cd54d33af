"""A lifecycle manager on an in-memory repository and fake loaders, for core unit tests."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from serval.core.composition.composite import CompositeServables
from serval.core.composition.layers import (
    BaseServable,
    CompositeBase,
    Composition,
    LayerPlan,
    no_layers,
)
from serval.core.events import EventBus, StateChanged
from serval.core.lifecycle.manager import LifecycleManager, ManagerOptions
from serval.core.model_spec import ModelSpec
from serval.core.servable import Predictor, Servable, ThreadPoolServable
from serval.core.tensors.datatypes import DataType
from serval.core.types import InferenceRequest, Tensor
from serval.testing import FakeLoaderFactory, MemorySource


class Harness:
    """``source`` is the repository, ``loaders`` the fake runtime, ``events`` every state
    change; the retry backoff is 0 unless ``retry_initial_s`` says otherwise."""

    def __init__(
        self,
        plan: LayerPlan = no_layers,
        base: BaseServable | None = None,
        *,
        composite: CompositeBase | None = None,
        **options: Any,
    ) -> None:
        self.source = MemorySource()
        self.pool = ThreadPoolExecutor(4)
        self.loaders = FakeLoaderFactory()
        self.events: list[StateChanged] = []
        self.bus = EventBus()
        self.bus.on_state_changed(self.events.append)
        options.setdefault("retry_initial_s", 0.0)
        self.manager = LifecycleManager(
            self.source,
            self.loaders,
            Composition(base or self._base, plan, composite or CompositeServables()),
            self.pool,
            self.bus,
            ManagerOptions(**options),
        )

    def _base(self, predictor: Predictor, spec: ModelSpec) -> Servable:
        return ThreadPoolServable(predictor, self.pool)

    async def sync(self) -> None:
        """One poll, waited for."""
        await self.manager._sync(await self.manager._scan(), wanted_default=True)
        await self.manager._wait_for_tasks()

    def serving(self, name: str) -> list[int]:
        return self.manager.serving_versions(name)

    def run(self, test: Callable[[Harness], Coroutine[Any, Any, None]]) -> None:
        """Run ``test`` on a fresh loop, then stop the manager."""

        async def body() -> None:
            try:
                await test(self)
            finally:
                await self.manager.stop()

        asyncio.run(body())
        self.pool.shutdown()


def echo_request(name: str, version: int | None = None) -> InferenceRequest:
    model_version = None if version is None else str(version)
    x = Tensor("x", DataType.FP32, np.zeros(1, np.float32))
    return InferenceRequest(name, [x], model_version=model_version)


async def predict(manager: LifecycleManager, name: str, version: int | None = None) -> int:
    """Lease ``name`` (``version``, else the latest), run one request on it; the version."""
    async with manager.lease(name, version) as handle:
        await handle.servable.predict(echo_request(name))
    return handle.id.version


async def wait_until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    """Poll ``condition`` on the event loop until it holds; fail the test past ``timeout_s``."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout_s:g} s")
        await asyncio.sleep(0.01)
