"""The lifecycle manager: keeps what is loaded in line with the versions the source asks for,
and leases loaded versions to requests.

Each model is reconciled under its own lock, so models load in parallel; a failed load is
recorded with its reason and retried with backoff, never touching other models. The
reconciling itself (load before unload, retiring off the lock) is ``reconciler``; a model's
state is ``record``; the read side (snapshots, leases, readiness, statuses) is ``table``.

To the data plane it offers a ``VersionSnapshot`` per model (built when the model's states
change, not per request) for a traffic policy to choose from, and ``lease(name, version)``,
which hands out a ``ServableHandle`` on the chosen version. It is also the
``ServableProvider`` of composite servables, and loads a model that needs others only once
they are available.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import Executor

from serval.core.composition.layers import ServableBuilder
from serval.core.errors import (
    ModelLoadError,
    ModelNotFoundError,
    OperationNotAllowedError,
)
from serval.core.events import EventBus
from serval.core.lifecycle.index_entry import IndexEntry
from serval.core.lifecycle.loader import LoaderFactory
from serval.core.lifecycle.options import ControlMode, ManagerOptions
from serval.core.lifecycle.reconciler import Reconciler
from serval.core.lifecycle.record import ModelRecord
from serval.core.lifecycle.source import ModelSource, Source
from serval.core.lifecycle.states import ServableState
from serval.core.lifecycle.status import index_entries
from serval.core.lifecycle.table import ModelTable
from serval.core.lifecycle.version_policy import VersionPolicy
from serval.core.load_override import LoadOverride
from serval.core.model_spec import ModelSpec

__all__ = ["ControlMode", "IndexEntry", "LifecycleManager", "ManagerOptions"]

logger = logging.getLogger(__name__)


class LifecycleManager(ModelTable):
    def __init__(
        self,
        source: Source,
        loader_factory: LoaderFactory,
        build: ServableBuilder,
        load_executor: Executor,
        events: EventBus,
        options: ManagerOptions,
    ) -> None:
        super().__init__(options)
        self._source = source
        self._load_executor = load_executor
        self._poll_task: asyncio.Task[None] | None = None
        self._reconciler = Reconciler(
            loader_factory,
            build,
            self,
            load_executor,
            events,
            options,
            is_available=self._available,
            on_available=self._wake_dependents,
            on_retired=self._forget_if_gone,
            on_configured=self._configured,
            needs_of=self._needs_of,
            on_cycle_changed=self._reconcile_soon,
        )
        self._configured_subscribers: tuple[Callable[[str, ModelSpec | None], None], ...] = ()

    def on_configured(self, callback: Callable[[str, ModelSpec | None], None]) -> None:
        """Call ``callback(model, spec)`` at each reconcile that accepts the model's spec (the
        traffic policy applies it: a change of the traffic section reloads nothing), and with
        None when the model has left the repository."""
        self._configured_subscribers = (*self._configured_subscribers, callback)

    def _configured(self, name: str, spec: ModelSpec | None) -> None:
        for callback in self._configured_subscribers:
            try:
                callback(name, spec)
            except Exception:
                logger.exception("model %s: applying its configuration failed", name)

    def version_folders(self, name: str) -> tuple[VersionPolicy, set[int]]:
        """The model's version policy and its version folders (for a traffic policy to check
        the versions it names against)."""
        record = self._models.get(name)
        if record is None or record.spec is None:
            raise ModelNotFoundError(f"unknown model {name!r}")
        found = set(record.source.versions) if record.source is not None else set()
        return record.spec.policy, found

    def served_versions(self, name: str) -> set[int]:
        """The versions the model's version policy serves from its folders (loaded or not)."""
        policy, found = self.version_folders(name)
        return policy.select(found)

    @property
    def control_mode(self) -> ControlMode:
        return self._options.control_mode

    # -- start and stop -------------------------------------------------------------------

    async def start(self) -> None:
        """Load what the control mode asks for, then (in poll mode) watch the repository."""
        if self._options.control_mode is ControlMode.EXPLICIT:
            names = self._options.startup_models
            if "*" in names:
                await self._sync(await self._scan(), wanted_default=True)
            for name in names:
                if name != "*":
                    with contextlib.suppress(ModelNotFoundError, ModelLoadError):
                        await self.load(name)
        else:
            await self._sync(await self._scan(), wanted_default=True)
        await self._wait_for_tasks()
        self._started = True
        self._poll_task = asyncio.create_task(self._poll_forever(), name="serval-poll")

    async def stop(self) -> None:
        """Stop watching, then unload every version, each after its requests drain."""
        if self._poll_task is not None:
            self._poll_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poll_task
        tasks = [r.task for r in self._models.values() if r.task is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for record in list(self._models.values()):
            for version in list(record.serving):
                self._reconciler.retire(record, record.serving.pop(version))
        await asyncio.gather(*list(self._reconciler.retirements))

    async def _poll_forever(self) -> None:
        """Poll mode: rescan the repository. Every mode: retry failed loads when due."""
        while True:
            await asyncio.sleep(self._options.poll_interval_s)
            try:
                if self._options.control_mode is ControlMode.POLL:
                    await self._sync(await self._scan(), wanted_default=True)
                else:
                    self._retry_due_failures()
            except Exception:  # a broken scan must not end polling
                logger.exception("polling the model repository failed")

    def _retry_due_failures(self) -> None:
        now = time.monotonic()
        for record in self._models.values():
            if any(failure.retry_at <= now for failure in record.failures.values()):
                self._schedule(record)

    async def _scan(self) -> dict[str, ModelSource]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._load_executor, self._source.scan)

    async def _sync(self, scanned: dict[str, ModelSource], *, wanted_default: bool) -> None:
        """Record what the source says and reconcile each model that is not busy already."""
        for name in set(scanned) | set(self._models):
            record = self._models.get(name)
            if record is None:
                record = self._models[name] = ModelRecord(name, wanted=wanted_default)
            record.source = scanned.get(name)
            record.changed()
            self._schedule(record)

    def _schedule(self, record: ModelRecord) -> None:
        """Reconcile ``record`` soon; if a reconcile runs already, once more after it, so that
        what the source said last is never lost."""
        if record.task is None or record.task.done():
            record.task = asyncio.create_task(
                self._reconcile_until_settled(record), name=f"load-{record.name}"
            )
        else:
            record.stale = True

    async def _reconcile_until_settled(self, record: ModelRecord) -> None:
        record.stale = True
        while record.stale:
            record.stale = False
            await self._reconcile(record)

    async def _wait_for_tasks(self) -> None:
        """Until every reconcile has finished, those it started included (a model that waited
        for another loads once that one is available)."""
        while tasks := [r.task for r in self._models.values() if r.task and not r.task.done()]:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _reconcile(self, record: ModelRecord) -> None:
        async with record.lock:
            try:
                await self._reconciler.reconcile(record)
            except Exception:
                logger.exception("reconciling model %s failed", record.name)
            self._forget_if_gone(record)

    def _forget_if_gone(self, record: ModelRecord) -> None:
        """Forget a model whose folder is gone once nothing of it serves, loads or drains."""
        gone = record.source is None and not (record.serving or record.loading or record.retiring)
        if gone and self._models.get(record.name) is record:
            del self._models[record.name]

    # -- models that need others ----------------------------------------------------------

    def _needs_of(self, name: str) -> tuple[str, ...]:
        record = self._models.get(name)
        return record.needs if record is not None else ()

    def _reconcile_soon(self, names: set[str]) -> None:
        for name in names:
            record = self._models.get(name)
            if record is not None:
                self._schedule(record)

    def _wake_dependents(self, available: ModelRecord) -> None:
        for record in self._models.values():
            if available.name in record.missing:
                self._schedule(record)

    # -- the control API ------------------------------------------------------------------

    async def load(self, name: str, spec_override: LoadOverride | None = None) -> None:
        """Load (or reload) a model from the repository; raise if no version serves after.
        Versions it replaces drain in the background. A model that needs others (a
        composite) loads those of them that are not loaded first, as Triton's ensembles."""
        self._refuse_in_mode_none("load")
        await self._load(name, spec_override, loading=set())

    async def _load(
        self, name: str, spec_override: LoadOverride | None, *, loading: set[str]
    ) -> None:
        loading.add(name)  # a cycle of composites loads each once, then says what it waits for
        loop = asyncio.get_running_loop()
        source = await loop.run_in_executor(self._load_executor, self._source.scan_model, name)
        if source is None:
            raise ModelNotFoundError(f"model {name!r} is not in the model repository")
        record = self._models.get(name)
        if record is None:
            record = self._models[name] = ModelRecord(name, wanted=True)
        record.source = source
        record.spec_override = spec_override
        if spec_override is not None:
            spec_file = str(source.spec_file) if source.spec_file is not None else None
            logger.info("model %s: settings: %s", name, spec_override.describe_origins(spec_file))
        record.wanted = True
        record.failures.clear()  # an explicit load retries at once
        await self._reconcile(record)
        needed = [d for d in record.missing if d not in loading and not self._available(d)]
        if needed:
            for dependency in needed:
                with contextlib.suppress(ModelNotFoundError, ModelLoadError):
                    await self._load(dependency, None, loading=loading)
            await self._reconcile(record)  # its reason names what is still missing
        if record.config_error is not None:
            raise ModelLoadError(f"failed to load model {name!r}: {record.config_error}")
        if record.failures or not record.serving:
            # Also when an older load still serves: the caller asked for this load.
            raise ModelLoadError(f"failed to load model {name!r}: {record.why_unavailable()}")

    async def unload(self, name: str) -> None:
        """Unload every version; it stays unloaded until loaded again. Returns once the
        versions it unloaded have drained and closed (outside the model's lock, so other
        loads, unloads and polls of the model never wait for the drain)."""
        self._refuse_in_mode_none("unload")
        record = self._models.get(name)
        if record is None:
            raise ModelNotFoundError(f"model {name!r} is not loaded")
        record.wanted = False
        record.unloaded.update(record.serving)
        serving = set(record.serving.values())
        await self._reconcile(record)
        mine = [task for managed, task in record.retiring.items() if managed in serving]
        if mine:
            await asyncio.wait(mine)  # not cancelled with the caller: the drain goes on

    def _refuse_in_mode_none(self, action: str) -> None:
        if self._options.control_mode is ControlMode.NONE:
            raise OperationNotAllowedError(
                f"cannot {action} models: the server runs with model control mode 'none'"
            )

    async def index(self) -> list[IndexEntry]:
        """Every model in the repository or loaded, with each version's state."""
        scanned = await self._scan()
        entries: list[IndexEntry] = []
        for name in sorted(set(scanned) | set(self._models)):
            record = self._models.get(name)
            if record is None:
                entries.append(IndexEntry(name, None, ServableState.START, "not loaded"))
            else:
                entries.extend(index_entries(record, self._missing(record)))
        return entries
