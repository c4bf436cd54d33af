"""Reconciling one model: load the aspired versions that are not loaded, retire the rest.

Availability first, as TF Serving's default policy: a new version loads and warms up before
the version it replaces retires. The model's lock covers state changes only: a retired
version drains its requests (leases) and closes in a task of its own, so a new version serves
as soon as it is available, and a load or unload of the model never waits for a drain.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import replace

from serval.core.composition.layers import ServableBuilder
from serval.core.composition.provider import ServableProvider
from serval.core.errors import ModelConfigError, ModelLoadError, ServalError
from serval.core.events import EventBus, StateChanged
from serval.core.lifecycle.handles import FailedLoad, ManagedServable
from serval.core.lifecycle.loader import Loader, LoaderFactory, LoadRequest
from serval.core.lifecycle.options import ManagerOptions
from serval.core.lifecycle.record import ModelRecord, dependency_cycle
from serval.core.lifecycle.source import VersionSource
from serval.core.lifecycle.states import ServableId, ServableState
from serval.core.load_override import LoadOverride
from serval.core.model_spec import RELOAD_FREE_SECTIONS, ModelSpec
from serval.core.servable import Predictor, Servable
from serval.core.statistics import VersionStatistics

logger = logging.getLogger("serval.core.lifecycle.manager")


class Reconciler:
    def __init__(
        self,
        loader_factory: LoaderFactory,
        build: ServableBuilder,
        provider: ServableProvider,
        load_executor: Executor,
        events: EventBus,
        options: ManagerOptions,
        *,
        is_available: Callable[[str], bool],
        on_available: Callable[[ModelRecord], None],
        on_retired: Callable[[ModelRecord], None],
        on_configured: Callable[[str, ModelSpec | None], None] = lambda name, spec: None,
        needs_of: Callable[[str], tuple[str, ...]] = lambda name: (),
        on_cycle_changed: Callable[[set[str]], None] = lambda names: None,
    ) -> None:
        self._loader_factory = loader_factory
        self._build = build
        self._provider = provider
        self._load_executor = load_executor
        self._events = events
        self._options = options
        self._is_available = is_available
        self._on_available = on_available
        self._on_retired = on_retired
        self._on_configured = on_configured
        self._needs_of = needs_of
        self._on_cycle_changed = on_cycle_changed
        self.retirements: set[asyncio.Task[None]] = set()

    async def reconcile(self, record: ModelRecord) -> None:
        """One pass; the caller holds ``record.lock``."""
        spec = record.spec
        record.missing = ()
        if record.source is None or not record.wanted:
            aspired: set[int] = set()  # removed from the repository, or unloaded
            if record.source is None:
                self._on_configured(record.name, None)
        elif record.config_error is not None or spec is None:
            record.changed()
            return  # keep serving what is loaded; readiness reports the error
        else:
            record.last_good_spec = spec
            # Sections that need no reload (traffic) apply now, loaded versions or not.
            self._on_configured(record.name, spec)
            aspired = spec.policy.select(record.source.versions)
            record.needs = spec.dependencies()
            record.missing = tuple(d for d in record.needs if not self._is_available(d))
        self._find_cycle(record)
        for version in list(record.failures):
            if version not in aspired:
                del record.failures[version]
        record.changed()

        to_load: list[VersionSource] = []
        now = time.monotonic()
        for version in sorted(aspired):
            if record.missing or record.cycle:
                # Loads once every model it needs is available (on_available), and never in a
                # cycle: its calls would go round it until a deadline.
                break
            assert record.source is not None
            found = record.source.versions[version]
            fingerprint = _with_override(found.fingerprint, record.spec_override)
            current = record.serving.get(version)
            if current is not None and current.fingerprint == fingerprint:
                continue
            failure = record.failures.get(version)
            if failure and failure.fingerprint == fingerprint and now < failure.retry_at:
                continue
            to_load.append(replace(found, fingerprint=fingerprint))
        if to_load:
            assert spec is not None
            await asyncio.gather(*(self._load_version(record, spec, v) for v in to_load))

        stale = [v for v in record.serving if v not in aspired]
        # Availability first: old versions go only once an aspired one serves (or none is
        # aspired at all: the model was unloaded or removed).
        if stale and (not aspired or any(v in record.serving for v in aspired)):
            for version in stale:
                self.retire(record, record.serving.pop(version))

    def _find_cycle(self, record: ModelRecord) -> None:
        """Whether ``record`` needs models that, through others, need it: then it does not
        load, and its reason says so. The other models of a cycle found or broken here are
        reconciled again, so that theirs say it too (and one that was waiting loads)."""
        cycle = dependency_cycle(record.name, self._needs_of) if record.needs else ()
        if cycle != record.cycle:
            others = {*cycle, *record.cycle} - {record.name}
            record.cycle = cycle
            self._on_cycle_changed(others)

    async def _load_version(
        self, record: ModelRecord, spec: ModelSpec, found: VersionSource
    ) -> None:
        servable_id = ServableId(record.name, found.version)
        stats = record.stats.get(found.version)
        if stats is None:
            stats = record.stats[found.version] = VersionStatistics(record.name, found.version)
        managed = ManagedServable(servable_id, found.fingerprint, stats)
        record.loading[found.version] = managed
        record.unloaded.discard(found.version)
        record.changed()
        managed.advance(ServableState.LOADING)
        self._events.emit(StateChanged(servable_id, ServableState.LOADING, spec=spec))
        started = time.perf_counter()
        try:
            if spec.composite is not None:
                managed.servable = self._build_composite(servable_id, spec)
            else:
                request = LoadRequest(record.name, found.version, found.path, spec)
                loader = self._loader_factory(request)
                loop = asyncio.get_running_loop()
                predictor = await asyncio.wait_for(
                    loop.run_in_executor(self._load_executor, _load_guarded, loader),
                    self._options.load_timeout_s,
                )
                managed.servable = self._build(predictor, spec, self._provider, servable_id)
        except Exception as exc:
            self._record_failure(record, managed, found, exc)
            return
        finally:
            record.loading.pop(found.version, None)
            record.changed()
        managed.advance(ServableState.AVAILABLE)
        record.failures.pop(found.version, None)
        previous = record.serving.get(found.version)
        record.serving[found.version] = managed
        record.changed()
        self._events.emit(
            StateChanged(
                servable_id,
                ServableState.AVAILABLE,
                duration_s=time.perf_counter() - started,
                spec=spec,
            )
        )
        if previous is not None:  # a reload of the same version: retire the old load
            self.retire(record, previous)
        self._on_available(record)

    def _build_composite(self, id: ServableId, spec: ModelSpec) -> Servable:
        """A composite model has no runtime: its servable calls other models, and derives its
        metadata from theirs now (cheap, on the loop). Why that fails is the reason shown."""
        try:
            return self._build.composite(id, spec, self._provider)
        except ServalError as exc:  # a step that does not fit, or is gone again
            raise ModelConfigError(exc.message) from exc

    def _record_failure(
        self, record: ModelRecord, managed: ManagedServable, found: VersionSource, exc: Exception
    ) -> None:
        if isinstance(exc, TimeoutError):
            reason = f"loading took longer than {self._options.load_timeout_s:g} s"
        else:
            reason = str(exc) if isinstance(exc, ModelConfigError) else _describe(exc)
        previous = record.failures.get(found.version)
        attempts = 1
        if previous is not None and previous.fingerprint == found.fingerprint:
            attempts = previous.attempts + 1
        delay = min(self._options.retry_initial_s * 2 ** (attempts - 1), self._options.retry_max_s)
        record.failures[found.version] = FailedLoad(
            found.version, found.fingerprint, reason, attempts, time.monotonic() + delay
        )
        managed.advance(ServableState.END, error=reason)
        self._events.emit(StateChanged(managed.id, ServableState.END, error=reason))

    def retire(self, record: ModelRecord, managed: ManagedServable) -> asyncio.Task[None]:
        """Stop handing out ``managed`` (the caller took it out of ``record.serving``), then
        drain and close it in a task of its own; returns that task."""
        managed.advance(ServableState.UNLOADING)
        record.changed()
        self._events.emit(StateChanged(managed.id, ServableState.UNLOADING))
        task = asyncio.create_task(
            self._drain_and_close(record, managed), name=f"retire-{managed.id}"
        )
        record.retiring[managed] = task
        self.retirements.add(task)
        task.add_done_callback(self.retirements.discard)
        return task

    async def _drain_and_close(self, record: ModelRecord, managed: ManagedServable) -> None:
        try:
            if not await managed.drained(self._options.drain_timeout_s):
                logger.warning(
                    "%s still had %d request(s) in flight after %g s; unloading anyway",
                    managed.id,
                    managed.inflight,
                    self._options.drain_timeout_s,
                )
            if managed.servable is not None:
                try:
                    await managed.servable.close()
                except Exception:
                    logger.exception("closing %s failed", managed.id)
        finally:
            managed.advance(ServableState.END)
            record.retiring.pop(managed, None)
            record.changed()
            self._events.emit(StateChanged(managed.id, ServableState.END))
            self._on_retired(record)


def _with_override(fingerprint: str, override: LoadOverride | None) -> str:
    if override is None:
        return fingerprint
    # Without the sections that reload nothing (a new traffic policy, new monitoring).
    spec = override.spec.model_dump_json(exclude=set(RELOAD_FREE_SECTIONS))
    return f"{fingerprint}+{hash(spec)}"


def _describe(exc: BaseException) -> str:
    message = str(exc).strip().replace("\n", " ")
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def _load_guarded(loader: Loader) -> Predictor:
    """``loader.load()``, with a ``SystemExit`` or ``KeyboardInterrupt`` (raised by a model's
    code) turned into a failed load: on the event loop it would stop the whole server."""
    try:
        return loader.load()
    except Exception:
        raise
    except GeneratorExit:
        raise
    except BaseException as exc:
        raise ModelLoadError(f"loading raised {_describe(exc)}") from exc
