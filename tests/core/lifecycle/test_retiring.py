"""Retiring off the lock: a version that drains never holds up a new version, a load or an
unload of its model; leases are released on every path, cancellation included."""

from __future__ import annotations

import asyncio
import threading

import pytest

from serval.core.lifecycle.states import ServableState
from serval.testing import EchoPredictor
from tests.core.fakes import Harness, echo_request, predict, wait_until


def test_new_version_serves_while_the_old_one_drains() -> None:
    # With a request held on v1 and a 30 s drain timeout, v2 must serve at once, and loading
    # or unloading the model must not wait for v1's drain.
    h = Harness(drain_timeout_s=30.0)
    h.source.add_version("m", 1)

    async def test(h: Harness) -> None:
        await h.manager.start()
        held = h.manager.lease("m")
        h.source.add_version("m", 2)
        await asyncio.wait_for(h.sync(), 2)
        assert h.serving("m") == [2]
        assert await predict(h.manager, "m") == 2
        states = {s.id.version: s.state for s in h.manager.statuses("m")}
        assert states == {2: ServableState.AVAILABLE, 1: ServableState.UNLOADING}
        assert [e.state for e in await h.manager.index()] == [
            ServableState.UNLOADING,
            ServableState.AVAILABLE,
        ]
        await asyncio.wait_for(h.manager.load("m"), 2)  # the lock is free
        assert not h.loaders.predictors[("m", 1)].closed
        await asyncio.wait_for(h.manager.unload("m"), 2)  # waits for v2 only
        assert h.loaders.predictors[("m", 2)].closed
        assert not h.loaders.predictors[("m", 1)].closed
        held.release()
        await asyncio.wait_for(asyncio.gather(*h.manager._reconciler.retirements), 2)
        assert h.loaders.predictors[("m", 1)].closed
        assert [(s.id.version, s.state) for s in h.manager.statuses("m")] == [
            (2, ServableState.END)  # unloaded through the API; v1 was replaced
        ]

    h.run(test)


def test_stop_waits_for_the_drains() -> None:
    h = Harness(drain_timeout_s=30.0)
    h.source.add_version("m", 1)

    async def test(h: Harness) -> None:
        await h.manager.start()
        held = h.manager.lease("m")
        h.source.add_version("m", 2)
        await h.sync()
        stopping = asyncio.create_task(h.manager.stop())
        await asyncio.sleep(0.05)
        assert not stopping.done() and not h.loaders.predictors[("m", 1)].closed
        held.release()
        await asyncio.wait_for(stopping, 2)
        assert h.loaders.predictors[("m", 1)].closed

    h.run(test)


def test_drain_timeout_closes_anyway(caplog: pytest.LogCaptureFixture) -> None:
    h = Harness(drain_timeout_s=0.05)
    h.source.add_version("m", 1)

    async def test(h: Harness) -> None:
        await h.manager.start()
        held = h.manager.lease("m")
        await asyncio.wait_for(h.manager.unload("m"), 2)
        assert h.loaders.predictors[("m", 1)].closed
        held.release()

    h.run(test)
    assert "m:1 still had 1 request(s) in flight after 0.05 s" in caplog.text


def test_a_cancelled_request_releases_its_lease() -> None:
    h = Harness()
    h.source.add_version("m", 1)
    gate = threading.Event()
    h.loaders.predictors[("m", 1)] = EchoPredictor(gate=gate)

    async def test(h: Harness) -> None:
        await h.manager.start()

        async def call() -> None:
            async with h.manager.lease("m") as handle:
                await handle.servable.predict(echo_request("m"))

        task = asyncio.create_task(call())
        await wait_until(lambda: any(w.inflight for w in h.manager.workload().values()))
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        gate.set()
        assert [w.inflight for w in h.manager.workload().values()] == [0]

    h.run(test)


def test_snapshot_is_built_once_per_change() -> None:
    h = Harness()
    h.source.add_version("m", 1)

    async def test(h: Harness) -> None:
        await h.manager.start()
        first = h.manager.snapshot("m")
        await predict(h.manager, "m")
        assert h.manager.snapshot("m") is first  # requests read the same object
        h.source.add_version("m", 2)
        await h.sync()
        assert h.manager.snapshot("m") is not first
        assert h.manager.snapshot("m").versions == (2,)

    h.run(test)
