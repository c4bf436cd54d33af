"""The lifecycle manager with fake loaders: loading, availability, draining, failures, modes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from serval.core.errors import (
    ModelLoadError,
    ModelNotFoundError,
    ModelNotReadyError,
    OperationNotAllowedError,
)
from serval.core.events import EventBus, StateChanged
from serval.core.lifecycle.manager import ControlMode, LifecycleManager, ManagerOptions
from serval.core.lifecycle.source import FileSystemSource
from serval.core.lifecycle.states import ServableState
from serval.core.model_spec import ModelSpec
from serval.core.servable import Predictor, Servable, ThreadPoolServable
from serval.core.types import InferenceRequest, Tensor
from serval.testing import FakeLoaderFactory, write_version


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(coro)


class Harness:
    def __init__(self, repository: Path, **options: Any) -> None:
        self.pool = ThreadPoolExecutor(4)
        self.loaders = FakeLoaderFactory()
        self.events: list[StateChanged] = []
        bus = EventBus()
        bus.on_state_changed(self.events.append)

        def wrap(predictor: Predictor, spec: ModelSpec) -> Servable:
            return ThreadPoolServable(predictor, self.pool)

        options.setdefault("retry_initial_s", 0.0)
        self.manager = LifecycleManager(
            FileSystemSource(repository),
            self.loaders,
            wrap,
            self.pool,
            bus,
            ManagerOptions(**options),
        )

    async def sync(self) -> None:
        """One poll, waited for."""
        await self.manager._sync(await self.manager._scan(), wanted_default=True)
        await self.manager._wait_for_tasks()

    def serving(self, name: str) -> list[int]:
        return self.manager.serving_versions(name)


async def predict(manager: LifecycleManager, name: str, version: int | None = None) -> int:
    managed = manager.acquire(name, version)
    try:
        assert managed.servable is not None
        request = InferenceRequest(
            name,
            [Tensor("x", managed.servable.metadata.inputs[0].datatype, np.zeros(1, np.float32))],
        )
        await managed.servable.predict(request)
    finally:
        managed.release()
    return managed.id.version


def with_manager(
    tmp_path: Path, test: Callable[[Harness], Coroutine[Any, Any, None]], **options: Any
) -> Harness:
    harness = Harness(tmp_path, **options)

    async def body() -> None:
        try:
            await test(harness)
        finally:
            await harness.manager.stop()

    run(body())
    return harness


def test_loads_latest_version_and_serves_it(tmp_path: Path) -> None:
    write_version(tmp_path, "m", 1)
    write_version(tmp_path, "m", 3)

    async def test(h: Harness) -> None:
        await h.manager.start()
        assert h.serving("m") == [3]
        assert await predict(h.manager, "m") == 3
        assert h.manager.readiness() == (True, "")
        with pytest.raises(ModelNotFoundError, match="not served"):
            h.manager.acquire("m", 1)
        with pytest.raises(ModelNotFoundError, match="has no version 2"):
            h.manager.acquire("m", 2)
        with pytest.raises(ModelNotFoundError, match="unknown model"):
            h.manager.acquire("other")

    with_manager(tmp_path, test)


def test_policy_all_and_labels(tmp_path: Path) -> None:
    write_version(tmp_path, "m", 1)
    write_version(tmp_path, "m", 2)
    (tmp_path / "m" / "model.yaml").write_text("version_policy: all\nlabels: {stable: 1}\n")

    async def test(h: Harness) -> None:
        await h.manager.start()
        assert h.serving("m") == [1, 2]
        assert await predict(h.manager, "m") == 2
        lease = h.manager.acquire("m", label="stable")
        lease.release()
        assert lease.id.version == 1
        with pytest.raises(ModelNotFoundError, match="label 'nope'"):
            h.manager.acquire("m", label="nope")

    with_manager(tmp_path, test)


def test_new_version_loads_before_old_unloads(tmp_path: Path) -> None:
    write_version(tmp_path, "m", 1)

    async def test(h: Harness) -> None:
        await h.manager.start()
        write_version(tmp_path, "m", 2)
        await h.sync()
        assert h.serving("m") == [2]
        order = [(e.id.version, e.state) for e in h.events if e.id.name == "m"]
        assert order.index((2, ServableState.AVAILABLE)) < order.index((1, ServableState.UNLOADING))
        assert h.loaders.predictors[("m", 1)].closed

    with_manager(tmp_path, test)


def test_removed_version_falls_back_to_previous(tmp_path: Path) -> None:
    write_version(tmp_path, "m", 1)
    v2 = write_version(tmp_path, "m", 2)

    async def test(h: Harness) -> None:
        await h.manager.start()
        assert h.serving("m") == [2]
        for file in v2.iterdir():
            file.unlink()
        v2.rmdir()
        await h.sync()
        assert h.serving("m") == [1]

    with_manager(tmp_path, test)


def test_unload_waits_for_requests_in_flight(tmp_path: Path) -> None:
    write_version(tmp_path, "m", 1)

    async def test(h: Harness) -> None:
        await h.manager.start()
        lease = h.manager.acquire("m")
        unloading = asyncio.create_task(h.manager.unload("m"))
        await asyncio.sleep(0.05)
        assert not unloading.done()
        assert lease.state is ServableState.UNLOADING
        assert not h.loaders.predictors[("m", 1)].closed
        lease.release()
        await asyncio.wait_for(unloading, 5)
        assert lease.state is ServableState.END
        assert h.loaders.predictors[("m", 1)].closed

    with_manager(tmp_path, test)


def test_failed_load_is_reported_retried_and_isolated(tmp_path: Path) -> None:
    write_version(tmp_path, "good", 1)
    write_version(tmp_path, "bad", 1)

    async def test(h: Harness) -> None:
        h.loaders.failing[("bad", 1)] = RuntimeError("corrupt file")
        await h.manager.start()
        assert h.serving("good") == [1]
        assert h.serving("bad") == []
        ready, reason = h.manager.readiness()
        assert not ready and "corrupt file" in reason
        with pytest.raises(ModelNotReadyError, match="corrupt file"):
            h.manager.acquire("bad")
        index = {(e.name, e.version): e for e in await h.manager.index()}
        assert index[("bad", 1)].state is ServableState.END
        assert "corrupt file" in index[("bad", 1)].reason
        assert index[("good", 1)].state is ServableState.AVAILABLE
        # The next poll retries (the backoff is 0 here) and succeeds.
        del h.loaders.failing[("bad", 1)]
        await h.sync()
        assert h.serving("bad") == [1]
        assert h.manager.readiness() == (True, "")

    with_manager(tmp_path, test)


def test_retry_waits_for_backoff(tmp_path: Path) -> None:
    write_version(tmp_path, "bad", 1)

    async def test(h: Harness) -> None:
        h.loaders.failing[("bad", 1)] = RuntimeError("nope")
        await h.manager.start()
        attempts = h.loaders.loaded.count(("bad", 1))
        await h.sync()
        assert h.loaders.loaded.count(("bad", 1)) == attempts  # still backing off
        # Changing the files retries at once.
        (tmp_path / "bad" / "1" / "model.onnx").write_bytes(b"new")
        await h.sync()
        assert h.loaders.loaded.count(("bad", 1)) == attempts + 1

    with_manager(tmp_path, test, retry_initial_s=60.0)


def test_failed_new_version_keeps_old_one_serving(tmp_path: Path) -> None:
    write_version(tmp_path, "m", 1)

    async def test(h: Harness) -> None:
        await h.manager.start()
        h.loaders.failing[("m", 2)] = RuntimeError("broken v2")
        write_version(tmp_path, "m", 2)
        await h.sync()
        assert h.serving("m") == [1]
        assert await predict(h.manager, "m") == 1
        assert not h.manager.readiness()[0]

    with_manager(tmp_path, test)


def test_api_unload_sticks_while_polling(tmp_path: Path) -> None:
    write_version(tmp_path, "m", 1)

    async def test(h: Harness) -> None:
        await h.manager.start()
        await h.manager.unload("m")
        await h.sync()
        assert h.serving("m") == []
        assert h.manager.readiness() == (True, "")  # an unloaded model is not asked for
        with pytest.raises(ModelNotFoundError, match="not loaded"):
            h.manager.acquire("m")
        index = await h.manager.index()
        assert [(e.version, e.state, e.reason) for e in index] == [
            (1, ServableState.END, "unloaded")
        ]
        await h.manager.load("m")
        assert h.serving("m") == [1]

    with_manager(tmp_path, test)


def test_explicit_mode_loads_only_what_is_asked(tmp_path: Path) -> None:
    write_version(tmp_path, "a", 1)
    write_version(tmp_path, "b", 1)

    async def test(h: Harness) -> None:
        await h.manager.start()
        assert h.serving("a") == [1]
        assert h.serving("b") == []
        await h.manager.load("b")
        assert h.serving("b") == [1]
        with pytest.raises(ModelNotFoundError):
            await h.manager.load("missing")

    with_manager(tmp_path, test, control_mode=ControlMode.EXPLICIT, startup_models=("a",))


def test_mode_none_refuses_load_and_unload(tmp_path: Path) -> None:
    write_version(tmp_path, "a", 1)

    async def test(h: Harness) -> None:
        await h.manager.start()
        with pytest.raises(OperationNotAllowedError):
            await h.manager.unload("a")
        with pytest.raises(OperationNotAllowedError):
            await h.manager.load("a")

    with_manager(tmp_path, test, control_mode=ControlMode.NONE)


def test_load_reports_failure_reason(tmp_path: Path) -> None:
    write_version(tmp_path, "m", 1)

    async def test(h: Harness) -> None:
        await h.manager.start()
        await h.manager.unload("m")
        h.loaders.failing[("m", 1)] = ValueError("bad weights")
        with pytest.raises(ModelLoadError, match="bad weights"):
            await h.manager.load("m")

    with_manager(tmp_path, test)


def test_bad_model_yaml_marks_model_failed(tmp_path: Path) -> None:
    write_version(tmp_path, "m", 1)
    write_version(tmp_path, "ok", 1)
    (tmp_path / "m" / "model.yaml").write_text("max_batch_size: -3\nbogus: 1\n")

    async def test(h: Harness) -> None:
        await h.manager.start()
        assert h.serving("ok") == [1]
        ready, reason = h.manager.readiness()
        assert not ready
        assert "model.yaml" in reason and "bogus: unknown key" in reason
        assert "max_batch_size" in reason
        (entry,) = [e for e in await h.manager.index() if e.name == "m"]
        assert entry.state is ServableState.END and "bogus" in entry.reason

    with_manager(tmp_path, test)


def test_non_strict_readiness(tmp_path: Path) -> None:
    write_version(tmp_path, "bad", 1)

    async def test(h: Harness) -> None:
        h.loaders.failing[("bad", 1)] = RuntimeError("x")
        assert h.manager.readiness()[0] is False  # not started
        await h.manager.start()
        assert h.manager.readiness() == (True, "")

    with_manager(tmp_path, test, strict_readiness=False)


def test_removed_model_is_unloaded_and_forgotten(tmp_path: Path) -> None:
    folder = write_version(tmp_path, "m", 1)

    async def test(h: Harness) -> None:
        await h.manager.start()
        for file in folder.iterdir():
            file.unlink()
        folder.rmdir()
        (tmp_path / "m").rmdir()
        await h.sync()
        assert h.manager.model_names() == []
        assert h.manager.readiness() == (True, "")

    with_manager(tmp_path, test)


def test_changed_files_reload_the_same_version(tmp_path: Path) -> None:
    folder = write_version(tmp_path, "m", 1)

    async def test(h: Harness) -> None:
        await h.manager.start()
        (folder / "model.onnx").write_bytes(b"changed")
        await h.sync()
        assert h.loaders.loaded.count(("m", 1)) == 2
        assert h.serving("m") == [1]

    with_manager(tmp_path, test)


def test_explicit_mode_retries_failed_loads(tmp_path: Path) -> None:
    write_version(tmp_path, "m", 1)

    async def test(h: Harness) -> None:
        h.loaders.failing[("m", 1)] = RuntimeError("flaky storage")
        await h.manager.start()
        assert h.serving("m") == []
        del h.loaders.failing[("m", 1)]
        for _ in range(100):  # the retry loop runs every poll interval
            await asyncio.sleep(0.02)
            if h.serving("m"):
                break
        assert h.serving("m") == [1]

    with_manager(
        tmp_path,
        test,
        control_mode=ControlMode.EXPLICIT,
        startup_models=("m",),
        poll_interval_s=0.02,
    )


def test_failed_reload_is_reported_while_old_load_serves(tmp_path: Path) -> None:
    folder = write_version(tmp_path, "m", 1)

    async def test(h: Harness) -> None:
        await h.manager.start()
        (folder / "model.onnx").write_bytes(b"changed")
        h.loaders.failing[("m", 1)] = RuntimeError("bad new weights")
        with pytest.raises(ModelLoadError, match="bad new weights"):
            await h.manager.load("m")
        assert h.serving("m") == [1]
        (entry,) = await h.manager.index()
        assert entry.state is ServableState.AVAILABLE
        assert "reloading failed: RuntimeError: bad new weights" in entry.reason

    with_manager(tmp_path, test)


def test_labels_survive_a_broken_model_yaml(tmp_path: Path) -> None:
    write_version(tmp_path, "m", 1)
    (tmp_path / "m" / "model.yaml").write_text("labels: {stable: 1}\n")

    async def test(h: Harness) -> None:
        await h.manager.start()
        (tmp_path / "m" / "model.yaml").write_text("labels: {stable: 1}\nbogus: true\n")
        await h.sync()
        lease = h.manager.acquire("m", label="stable")
        lease.release()
        assert lease.id.version == 1
        assert "bogus" in h.manager.readiness()[1]

    with_manager(tmp_path, test)


def test_policy_matching_nothing_says_so(tmp_path: Path) -> None:
    write_version(tmp_path, "m", 1)
    (tmp_path / "m" / "model.yaml").write_text("version_policy: {specific: [4]}\n")

    async def test(h: Harness) -> None:
        await h.manager.start()
        reason = h.manager.readiness()[1]
        assert "no version folder matches the version policy (specific [4]; found [1])" in reason

    with_manager(tmp_path, test)
