"""The lifecycle manager on an in-memory repository with fake loaders: loading, availability,
draining, failures, modes."""

from __future__ import annotations

import asyncio

import pytest

from serval.core.errors import (
    ModelLoadError,
    ModelNotFoundError,
    ModelNotReadyError,
    OperationNotAllowedError,
)
from serval.core.lifecycle.manager import ControlMode
from serval.core.lifecycle.states import ServableState
from tests.core.fakes import Harness, predict


def test_loads_latest_version_and_serves_it() -> None:
    h = Harness()
    h.source.add_version("m", 1)
    h.source.add_version("m", 3)

    async def test(h: Harness) -> None:
        await h.manager.start()
        assert h.serving("m") == [3]
        assert await predict(h.manager, "m") == 3
        assert h.manager.readiness() == (True, "")
        with pytest.raises(ModelNotFoundError, match="not served"):
            h.manager.lease("m", 1)
        with pytest.raises(ModelNotFoundError, match="has no version 2"):
            h.manager.lease("m", 2)
        with pytest.raises(ModelNotFoundError, match="unknown model"):
            h.manager.lease("other")

    h.run(test)


def test_policy_all_and_labels_in_the_snapshot() -> None:
    h = Harness()
    h.source.add_version("m", 1)
    h.source.add_version("m", 2)
    h.source.set_spec("m", {"version_policy": "all", "labels": {"stable": 1}})

    async def test(h: Harness) -> None:
        await h.manager.start()
        assert h.serving("m") == [1, 2]
        assert await predict(h.manager, "m") == 2
        assert await predict(h.manager, "m", 1) == 1
        snapshot = h.manager.snapshot("m")
        assert (snapshot.versions, dict(snapshot.labels)) == ((1, 2), {"stable": 1})

    h.run(test)


def test_new_version_loads_before_old_unloads() -> None:
    h = Harness()
    h.source.add_version("m", 1)

    async def test(h: Harness) -> None:
        await h.manager.start()
        h.source.add_version("m", 2)
        await h.sync()
        assert h.serving("m") == [2]
        await h.manager.stop()  # waits for the retired version to close
        order = [(e.id.version, e.state) for e in h.events if e.id.name == "m"]
        assert order.index((2, ServableState.AVAILABLE)) < order.index((1, ServableState.UNLOADING))
        assert h.loaders.predictors[("m", 1)].closed

    h.run(test)


def test_removed_version_falls_back_to_previous() -> None:
    h = Harness()
    h.source.add_version("m", 1)
    h.source.add_version("m", 2)

    async def test(h: Harness) -> None:
        await h.manager.start()
        assert h.serving("m") == [2]
        h.source.remove_version("m", 2)
        await h.sync()
        assert h.serving("m") == [1]

    h.run(test)


def test_unload_waits_for_its_requests_in_flight() -> None:
    h = Harness()
    h.source.add_version("m", 1)

    async def test(h: Harness) -> None:
        await h.manager.start()
        lease = h.manager.lease("m")
        unloading = asyncio.create_task(h.manager.unload("m"))
        await asyncio.sleep(0.05)
        assert not unloading.done()
        (status,) = h.manager.statuses("m")
        assert status.state is ServableState.UNLOADING
        assert not h.loaders.predictors[("m", 1)].closed
        with pytest.raises(ModelNotFoundError, match="not loaded"):
            h.manager.lease("m")
        lease.release()
        lease.release()  # idempotent: the count stays right
        await asyncio.wait_for(unloading, 5)
        assert h.manager.statuses("m")[0].state is ServableState.END
        assert h.loaders.predictors[("m", 1)].closed

    h.run(test)


def test_failed_load_is_reported_retried_and_isolated() -> None:
    h = Harness()
    h.source.add_version("good", 1)
    h.source.add_version("bad", 1)

    async def test(h: Harness) -> None:
        h.loaders.failing[("bad", 1)] = RuntimeError("corrupt file")
        await h.manager.start()
        assert h.serving("good") == [1]
        assert h.serving("bad") == []
        ready, reason = h.manager.readiness()
        assert not ready and "corrupt file" in reason
        with pytest.raises(ModelNotReadyError, match="corrupt file"):
            h.manager.lease("bad")
        assert "corrupt file" in h.manager.snapshot("bad").unavailable
        index = {(e.name, e.version): e for e in await h.manager.index()}
        assert index[("bad", 1)].state is ServableState.END
        assert "corrupt file" in index[("bad", 1)].reason
        assert index[("good", 1)].state is ServableState.AVAILABLE
        # The next poll retries (the backoff is 0 here) and succeeds.
        del h.loaders.failing[("bad", 1)]
        await h.sync()
        assert h.serving("bad") == [1]
        assert h.manager.snapshot("bad").versions == (1,)
        assert h.manager.readiness() == (True, "")

    h.run(test)


def test_retry_waits_for_backoff() -> None:
    h = Harness(retry_initial_s=60.0)
    h.source.add_version("bad", 1)

    async def test(h: Harness) -> None:
        h.loaders.failing[("bad", 1)] = RuntimeError("nope")
        await h.manager.start()
        attempts = h.loaders.loaded.count(("bad", 1))
        await h.sync()
        assert h.loaders.loaded.count(("bad", 1)) == attempts  # still backing off
        h.source.add_version("bad", 1)  # changing the files retries at once
        await h.sync()
        assert h.loaders.loaded.count(("bad", 1)) == attempts + 1

    h.run(test)


def test_failed_new_version_keeps_old_one_serving() -> None:
    h = Harness()
    h.source.add_version("m", 1)

    async def test(h: Harness) -> None:
        await h.manager.start()
        h.loaders.failing[("m", 2)] = RuntimeError("broken v2")
        h.source.add_version("m", 2)
        await h.sync()
        assert h.serving("m") == [1]
        assert await predict(h.manager, "m") == 1
        assert not h.manager.readiness()[0]
        with pytest.raises(ModelNotReadyError, match="version 2 of model 'm' failed to load"):
            h.manager.lease("m", 2)

    h.run(test)


def test_api_unload_sticks_while_polling() -> None:
    h = Harness()
    h.source.add_version("m", 1)

    async def test(h: Harness) -> None:
        await h.manager.start()
        await h.manager.unload("m")
        await h.sync()
        assert h.serving("m") == []
        assert h.manager.readiness() == (True, "")  # an unloaded model is not asked for
        with pytest.raises(ModelNotFoundError, match="not loaded"):
            h.manager.lease("m")
        with pytest.raises(ModelNotFoundError, match="not loaded"):
            h.manager.snapshot("m")
        index = await h.manager.index()
        assert [(e.version, e.state, e.reason) for e in index] == [
            (1, ServableState.END, "unloaded")
        ]
        await h.manager.load("m")
        assert h.serving("m") == [1]

    h.run(test)


def test_explicit_mode_loads_only_what_is_asked() -> None:
    h = Harness(control_mode=ControlMode.EXPLICIT, startup_models=("a",))
    h.source.add_version("a", 1)
    h.source.add_version("b", 1)

    async def test(h: Harness) -> None:
        await h.manager.start()
        assert h.serving("a") == [1]
        assert h.serving("b") == []
        await h.manager.load("b")
        assert h.serving("b") == [1]
        with pytest.raises(ModelNotFoundError):
            await h.manager.load("missing")

    h.run(test)


def test_mode_none_refuses_load_and_unload() -> None:
    h = Harness(control_mode=ControlMode.NONE)
    h.source.add_version("a", 1)

    async def test(h: Harness) -> None:
        await h.manager.start()
        with pytest.raises(OperationNotAllowedError):
            await h.manager.unload("a")
        with pytest.raises(OperationNotAllowedError):
            await h.manager.load("a")

    h.run(test)


def test_load_reports_failure_reason() -> None:
    h = Harness()
    h.source.add_version("m", 1)

    async def test(h: Harness) -> None:
        await h.manager.start()
        await h.manager.unload("m")
        h.loaders.failing[("m", 1)] = ValueError("bad weights")
        with pytest.raises(ModelLoadError, match="bad weights"):
            await h.manager.load("m")

    h.run(test)


def test_bad_model_yaml_marks_model_failed() -> None:
    h = Harness()
    h.source.add_version("m", 1)
    h.source.add_version("ok", 1)
    h.source.set_spec("m", {"max_batch_size": -3, "bogus": 1})

    async def test(h: Harness) -> None:
        await h.manager.start()
        assert h.serving("ok") == [1]
        ready, reason = h.manager.readiness()
        assert not ready
        assert "model.yaml" in reason and "bogus: unknown key" in reason
        assert "max_batch_size" in reason
        (entry,) = [e for e in await h.manager.index() if e.name == "m"]
        assert entry.state is ServableState.END and "bogus" in entry.reason

    h.run(test)


def test_non_strict_readiness() -> None:
    h = Harness(strict_readiness=False)
    h.source.add_version("bad", 1)

    async def test(h: Harness) -> None:
        h.loaders.failing[("bad", 1)] = RuntimeError("x")
        assert h.manager.readiness()[0] is False  # not started
        await h.manager.start()
        assert h.manager.readiness() == (True, "")

    h.run(test)


def test_removed_model_is_unloaded_and_forgotten() -> None:
    h = Harness()
    h.source.add_version("m", 1)

    async def test(h: Harness) -> None:
        await h.manager.start()
        h.source.remove_model("m")
        await h.sync()
        await asyncio.gather(*h.manager._reconciler.retirements)
        assert h.manager.model_names() == []
        assert h.manager.readiness() == (True, "")

    h.run(test)


def test_changed_files_reload_the_same_version() -> None:
    h = Harness()
    h.source.add_version("m", 1)

    async def test(h: Harness) -> None:
        await h.manager.start()
        h.source.add_version("m", 1)
        await h.sync()
        assert h.loaders.loaded.count(("m", 1)) == 2
        assert h.serving("m") == [1]

    h.run(test)


def test_explicit_mode_retries_failed_loads() -> None:
    h = Harness(control_mode=ControlMode.EXPLICIT, startup_models=("m",), poll_interval_s=0.02)
    h.source.add_version("m", 1)

    async def test(h: Harness) -> None:
        h.loaders.failing[("m", 1)] = RuntimeError("flaky storage")
        await h.manager.start()
        assert h.serving("m") == []
        del h.loaders.failing[("m", 1)]
        for _ in range(250):  # the retry loop runs every poll interval
            await asyncio.sleep(0.02)
            if h.serving("m"):
                break
        assert h.serving("m") == [1]

    h.run(test)


def test_failed_reload_is_reported_while_old_load_serves() -> None:
    h = Harness()
    h.source.add_version("m", 1)

    async def test(h: Harness) -> None:
        await h.manager.start()
        h.source.add_version("m", 1)
        h.loaders.failing[("m", 1)] = RuntimeError("bad new weights")
        with pytest.raises(ModelLoadError, match="bad new weights"):
            await h.manager.load("m")
        assert h.serving("m") == [1]
        (entry,) = await h.manager.index()
        assert entry.state is ServableState.AVAILABLE
        assert "reloading failed: RuntimeError: bad new weights" in entry.reason

    h.run(test)


def test_labels_survive_a_broken_model_yaml() -> None:
    h = Harness()
    h.source.add_version("m", 1)
    h.source.set_spec("m", {"labels": {"stable": 1}})

    async def test(h: Harness) -> None:
        await h.manager.start()
        h.source.set_spec("m", {"labels": {"stable": 1}, "bogus": True})
        await h.sync()
        assert dict(h.manager.snapshot("m").labels) == {"stable": 1}
        assert "bogus" in h.manager.readiness()[1]

    h.run(test)


def test_policy_matching_nothing_says_so() -> None:
    h = Harness()
    h.source.add_version("m", 1)
    h.source.set_spec("m", {"version_policy": {"specific": [4]}})

    async def test(h: Harness) -> None:
        await h.manager.start()
        reason = h.manager.readiness()[1]
        assert "no version folder matches the version policy (specific [4]; found [1])" in reason

    h.run(test)
