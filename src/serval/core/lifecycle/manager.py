"""The lifecycle manager: reconciles the versions the source asks for with what is loaded.

It is availability-preserving, as TF Serving's default policy: a new version loads and warms up
before the version it replaces unloads, and an unloading version drains its in-flight requests
(leases) first. A failed load is recorded with its reason and retried with backoff; it never
touches other models. Each model is reconciled under its own lock, so models load in parallel.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Executor
from dataclasses import dataclass, field, replace
from enum import StrEnum

from serval.core.errors import (
    ModelConfigError,
    ModelLoadError,
    ModelNotFoundError,
    ModelNotReadyError,
    OperationNotAllowedError,
)
from serval.core.events import EventBus, StateChanged
from serval.core.lifecycle.handles import FailedLoad, ManagedServable, Workload
from serval.core.lifecycle.loader import LoaderFactory, LoadRequest
from serval.core.lifecycle.source import ModelSource, Source, VersionSource
from serval.core.lifecycle.states import ServableId, ServableState, ServableStatus
from serval.core.model_spec import ModelSpec
from serval.core.servable import Predictor, Servable
from serval.core.statistics import VersionStatistics

logger = logging.getLogger(__name__)


class ControlMode(StrEnum):
    """As Triton's ``--model-control-mode``."""

    POLL = "poll"  # load everything, watch the repository
    EXPLICIT = "explicit"  # load only what the API (or --load-model) asks for
    NONE = "none"  # load everything once; the load/unload API is refused


@dataclass(frozen=True, slots=True)
class ManagerOptions:
    control_mode: ControlMode = ControlMode.POLL
    poll_interval_s: float = 2.0
    strict_readiness: bool = True
    startup_models: tuple[str, ...] = ()  # explicit mode; "*" loads every model
    retry_initial_s: float = 1.0
    retry_max_s: float = 300.0
    load_timeout_s: float = 600.0
    drain_timeout_s: float = 30.0


@dataclass(slots=True)
class ModelRecord:
    """What the manager knows of one model name."""

    name: str
    wanted: bool
    source: ModelSource | None = None
    spec_override: ModelSpec | None = None
    last_good_spec: ModelSpec | None = None  # what serving versions were loaded with
    serving: dict[int, ManagedServable] = field(default_factory=dict)
    loading: dict[int, ManagedServable] = field(default_factory=dict)
    retiring: set[ManagedServable] = field(default_factory=set)
    failures: dict[int, FailedLoad] = field(default_factory=dict)
    unloaded: set[int] = field(default_factory=set)  # unloaded through the API
    stats: dict[int, VersionStatistics] = field(default_factory=dict)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    stale: bool = False  # the source changed while a reconcile was running
    task: asyncio.Task[None] | None = None

    @property
    def spec(self) -> ModelSpec | None:
        if self.spec_override is not None:
            return self.spec_override
        if self.source is not None and self.source.spec is not None:
            return self.source.spec
        return self.last_good_spec

    @property
    def config_error(self) -> str | None:
        if self.spec_override is not None or self.source is None:
            return None
        return self.source.config_error


@dataclass(frozen=True, slots=True)
class IndexEntry:
    """One row of the repository index. ``state``: AVAILABLE, LOADING or UNLOADING for a
    version in those states; START for a model or version not loaded, END for one that failed
    or was unloaded (adapters render them in their protocol's words)."""

    name: str
    version: int | None
    state: ServableState
    reason: str = ""


ServableWrapper = Callable[[Predictor, ModelSpec], Servable]


class LifecycleManager:
    def __init__(
        self,
        source: Source,
        loader_factory: LoaderFactory,
        wrap: ServableWrapper,
        load_executor: Executor,
        events: EventBus,
        options: ManagerOptions,
    ) -> None:
        self._source = source
        self._loader_factory = loader_factory
        self._wrap = wrap
        self._load_executor = load_executor
        self._events = events
        self._options = options
        self._models: dict[str, ModelRecord] = {}
        self._started = False
        self._poll_task: asyncio.Task[None] | None = None

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
        for record in self._models.values():
            if record.task is not None and not record.task.done():
                record.task.cancel()
        for record in self._models.values():
            if record.task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await record.task
        retiring = []
        for record in self._models.values():
            for version in list(record.serving):
                retiring.append(self._retire(record, record.serving.pop(version)))
        await asyncio.gather(*retiring)

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
            due = any(failure.retry_at <= now for failure in record.failures.values())
            if due:
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
        tasks = [r.task for r in self._models.values() if r.task is not None]
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- reconciling ----------------------------------------------------------------------

    async def _reconcile(self, record: ModelRecord) -> None:
        async with record.lock:
            try:
                await self._reconcile_locked(record)
            except Exception:
                logger.exception("reconciling model %s failed", record.name)
            gone = record.source is None and not (record.serving or record.loading)
            if gone and self._models.get(record.name) is record:
                del self._models[record.name]  # the folder is gone and nothing serves

    async def _reconcile_locked(self, record: ModelRecord) -> None:
        spec = record.spec
        if record.source is None or not record.wanted:
            aspired: set[int] = set()  # removed from the repository, or unloaded
        elif record.config_error is not None or spec is None:
            return  # keep serving what is loaded; readiness reports the error
        else:
            record.last_good_spec = spec
            aspired = spec.policy.select(record.source.versions)
        for version in list(record.failures):
            if version not in aspired:
                del record.failures[version]

        to_load: list[VersionSource] = []
        now = time.monotonic()
        for version in sorted(aspired):
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
            await asyncio.gather(*(self._retire(record, record.serving.pop(v)) for v in stale))

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
        managed.advance(ServableState.LOADING)
        self._events.emit(StateChanged(servable_id, ServableState.LOADING, spec=spec))
        started = time.perf_counter()
        try:
            loader = self._loader_factory(LoadRequest(record.name, found.version, found.path, spec))
            loop = asyncio.get_running_loop()
            predictor = await asyncio.wait_for(
                loop.run_in_executor(self._load_executor, loader.load),
                self._options.load_timeout_s,
            )
            managed.servable = self._wrap(predictor, spec)
        except Exception as exc:
            self._record_failure(record, managed, found, exc)
            return
        finally:
            record.loading.pop(found.version, None)
        managed.advance(ServableState.AVAILABLE)
        record.failures.pop(found.version, None)
        previous = record.serving.get(found.version)
        record.serving[found.version] = managed
        self._events.emit(
            StateChanged(
                servable_id,
                ServableState.AVAILABLE,
                duration_s=time.perf_counter() - started,
                spec=spec,
            )
        )
        if previous is not None:  # a reload of the same version: retire the old load
            await self._retire(record, previous)

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

    async def _retire(self, record: ModelRecord, managed: ManagedServable) -> None:
        managed.advance(ServableState.UNLOADING)
        record.retiring.add(managed)
        self._events.emit(StateChanged(managed.id, ServableState.UNLOADING))
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
        managed.advance(ServableState.END)
        record.retiring.discard(managed)
        self._events.emit(StateChanged(managed.id, ServableState.END))

    # -- the control API ------------------------------------------------------------------

    async def load(self, name: str, spec_override: ModelSpec | None = None) -> None:
        """Load (or reload) a model from the repository; raise if no version serves after."""
        self._refuse_in_mode_none("load")
        loop = asyncio.get_running_loop()
        source = await loop.run_in_executor(self._load_executor, self._source.scan_model, name)
        if source is None:
            raise ModelNotFoundError(f"model {name!r} is not in the model repository")
        record = self._models.get(name)
        if record is None:
            record = self._models[name] = ModelRecord(name, wanted=True)
        record.source = source
        record.spec_override = spec_override
        record.wanted = True
        record.failures.clear()  # an explicit load retries at once
        await self._reconcile(record)
        if record.config_error is not None:
            raise ModelLoadError(f"failed to load model {name!r}: {record.config_error}")
        if record.failures or not record.serving:
            # Also when an older load still serves: the caller asked for this load.
            raise ModelLoadError(f"failed to load model {name!r}: {self._why_unavailable(record)}")

    async def unload(self, name: str) -> None:
        """Unload every version (draining each); it stays unloaded until loaded again."""
        self._refuse_in_mode_none("unload")
        record = self._models.get(name)
        if record is None:
            raise ModelNotFoundError(f"model {name!r} is not loaded")
        record.wanted = False
        record.unloaded.update(record.serving)
        await self._reconcile(record)

    def _refuse_in_mode_none(self, action: str) -> None:
        if self._options.control_mode is ControlMode.NONE:
            raise OperationNotAllowedError(
                f"cannot {action} models: the server runs with model control mode 'none'"
            )

    # -- what the data plane asks ---------------------------------------------------------

    def acquire(
        self, name: str, version: int | None = None, label: str | None = None
    ) -> ManagedServable:
        """Lease the servable that answers for ``name`` (highest serving version unless one is
        named). The caller must ``release()`` it."""
        record = self._models.get(name)
        if record is None or (not record.wanted and not record.serving):
            raise ModelNotFoundError(
                f"unknown model {name!r}" if record is None else f"model {name!r} is not loaded"
            )
        if label is not None:
            spec = record.spec
            labelled = spec.labels.get(label) if spec else None
            if labelled is None:
                raise ModelNotFoundError(f"model {name!r} has no version label {label!r}")
            version = labelled
        if version is None:
            if not record.serving:
                raise ModelNotReadyError(
                    f"model {name!r} has no available version: {self._why_unavailable(record)}",
                    retry_after_s=1.0,
                )
            managed = record.serving[max(record.serving)]
        else:
            found = record.serving.get(version)
            if found is None:
                raise self._version_error(record, version)
            managed = found
        managed.acquire()
        return managed

    def _version_error(self, record: ModelRecord, version: int) -> Exception:
        name = record.name
        if version in record.loading:
            return ModelNotReadyError(
                f"version {version} of model {name!r} is loading", retry_after_s=1.0
            )
        if version in record.failures:
            return ModelNotReadyError(
                f"version {version} of model {name!r} failed to load: "
                f"{record.failures[version].error}",
                retry_after_s=1.0,
            )
        on_disk = record.source is not None and version in record.source.versions
        if on_disk:
            policy = record.spec.policy.describe() if record.spec else "unknown"
            return ModelNotFoundError(
                f"version {version} of model {name!r} is not served (version policy: {policy})"
            )
        return ModelNotFoundError(f"model {name!r} has no version {version}")

    def _why_unavailable(self, record: ModelRecord) -> str:
        if record.config_error:
            return record.config_error
        if record.failures:
            return "; ".join(f"version {f.version}: {f.error}" for f in record.failures.values())
        if record.loading:
            return "loading"
        return _no_version_reason(record)

    def readiness(self) -> tuple[bool, str]:
        """(ready, reason). Strict: ready when every model the repository asks for serves."""
        if not self._started:
            return False, "models are loading"
        if not self._options.strict_readiness:
            return True, ""
        problems = []
        for record in self._models.values():
            if not record.wanted or record.source is None:
                continue
            if record.config_error or record.failures or not record.serving:
                problems.append(f"model {record.name!r}: {self._why_unavailable(record)}")
        return not problems, "; ".join(problems)

    def model_ready(self, name: str, version: int | None = None) -> bool:
        record = self._models.get(name)
        if record is None:
            raise ModelNotFoundError(f"unknown model {name!r}")
        if version is None:
            return bool(record.serving)
        return version in record.serving

    def spec(self, name: str) -> ModelSpec:
        record = self._models.get(name)
        if record is None or record.spec is None:
            raise ModelNotFoundError(f"unknown model {name!r}")
        return record.spec

    def serving_versions(self, name: str) -> list[int]:
        record = self._models.get(name)
        return sorted(record.serving) if record else []

    def workload(self) -> dict[ServableId, Workload]:
        """The requests on each serving or draining version now."""
        return {
            managed.id: managed.workload()
            for record in self._models.values()
            for managed in (*record.serving.values(), *record.retiring)
        }

    def model_names(self) -> list[str]:
        return sorted(self._models)

    def statuses(self, name: str) -> list[ServableStatus]:
        """Every version the manager knows of for ``name``, newest first."""
        record = self._models.get(name)
        if record is None:
            raise ModelNotFoundError(f"unknown model {name!r}")
        statuses = [m.status() for m in _all_managed(record)]
        for failure in record.failures.values():
            statuses.append(
                ServableStatus(ServableId(name, failure.version), ServableState.END, failure.error)
            )
        for version in record.unloaded - {s.id.version for s in statuses}:
            statuses.append(ServableStatus(ServableId(name, version), ServableState.END))
        return sorted(statuses, key=lambda s: s.id.version, reverse=True)

    def statistics(self, name: str | None, version: int | None) -> list[VersionStatistics]:
        if name is None:
            records: Iterable[ModelRecord] = self._models.values()
        else:
            record = self._models.get(name)
            if record is None:
                raise ModelNotFoundError(f"unknown model {name!r}")
            if version is not None and version not in record.stats:
                raise ModelNotFoundError(f"model {name!r} has no version {version}")
            records = [record]
        found = []
        for record in records:
            for stats_version, stats in sorted(record.stats.items()):
                if version is None or stats_version == version:
                    found.append(stats)
        return found

    async def index(self) -> list[IndexEntry]:
        """Every model in the repository or loaded, with each version's state."""
        scanned = await self._scan()
        entries: list[IndexEntry] = []
        for name in sorted(set(scanned) | set(self._models)):
            record = self._models.get(name)
            if record is None:
                entries.append(IndexEntry(name, None, ServableState.START, "not loaded"))
                continue
            entries.extend(_index_entries(record))
        return entries


def _index_entries(record: ModelRecord) -> list[IndexEntry]:
    rows: dict[int, IndexEntry] = {}
    for version in record.unloaded:
        rows[version] = IndexEntry(record.name, version, ServableState.END, "unloaded")
    for failure in record.failures.values():
        rows[failure.version] = IndexEntry(
            record.name, failure.version, ServableState.END, failure.error
        )
    for managed in record.retiring:
        rows[managed.id.version] = IndexEntry(
            record.name, managed.id.version, ServableState.UNLOADING
        )
    for version in record.loading:
        retry = record.failures.get(version)
        reason = f"retrying; the last attempt failed: {retry.error}" if retry else ""
        rows[version] = IndexEntry(record.name, version, ServableState.LOADING, reason)
    for version in record.serving:
        reload = record.failures.get(version)
        # A failed reload leaves the previous load serving: say both.
        reason = f"serving the previous load; reloading failed: {reload.error}" if reload else ""
        rows[version] = IndexEntry(record.name, version, ServableState.AVAILABLE, reason)
    entries = [rows[v] for v in sorted(rows)]
    if record.config_error:
        return [IndexEntry(record.name, None, ServableState.END, record.config_error), *entries]
    if not entries:
        reason = "not loaded" if not record.wanted else _no_version_reason(record)
        return [IndexEntry(record.name, None, ServableState.START, reason)]
    return entries


def _no_version_reason(record: ModelRecord) -> str:
    if record.source is not None and record.source.versions and record.spec is not None:
        return (
            f"no version folder matches the version policy "
            f"({record.spec.policy.describe()}; found {sorted(record.source.versions)})"
        )
    return "no version folder found"


def _all_managed(record: ModelRecord) -> list[ManagedServable]:
    return [*record.serving.values(), *record.loading.values(), *record.retiring]


def _with_override(fingerprint: str, override: ModelSpec | None) -> str:
    if override is None:
        return fingerprint
    return f"{fingerprint}+{hash(override.model_dump_json())}"


def _describe(exc: BaseException) -> str:
    message = str(exc).strip().replace("\n", " ")
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__
