"""What the lifecycle manager knows of one model name, and what it says about it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from types import MappingProxyType

from serval.core.errors import ModelNotFoundError, ModelNotReadyError
from serval.core.lifecycle.handles import FailedLoad, ManagedServable
from serval.core.lifecycle.snapshot import VersionSnapshot
from serval.core.lifecycle.source import ModelSource
from serval.core.load_override import LoadOverride
from serval.core.model_spec import ModelSpec
from serval.core.statistics import VersionStatistics


@dataclass(slots=True, eq=False)
class ModelRecord:
    """One model's versions in each state. Changed only by the manager, on the event loop;
    whoever changes what a snapshot shows calls ``changed()``."""

    name: str
    wanted: bool
    source: ModelSource | None = None
    spec_override: LoadOverride | None = None  # from the load API; model.yaml's operator fields
    last_good_spec: ModelSpec | None = None  # what serving versions were loaded with
    serving: dict[int, ManagedServable] = field(default_factory=dict)
    loading: dict[int, ManagedServable] = field(default_factory=dict)
    # Draining or closing, each in a task the manager owns (never under the lock).
    retiring: dict[ManagedServable, asyncio.Task[None]] = field(default_factory=dict)
    failures: dict[int, FailedLoad] = field(default_factory=dict)
    unloaded: set[int] = field(default_factory=set)  # unloaded through the API
    stats: dict[int, VersionStatistics] = field(default_factory=dict)
    # Models this one needs (its spec's dependencies, read at each reconcile), and those of
    # them that were not available at its last reconcile.
    needs: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    # A cycle of models that need each other through this one (this model first and last),
    # found at its last reconcile: it does not load (nor does any other model of the cycle),
    # even when the models it needs are available. Empty: none.
    cycle: tuple[str, ...] = ()
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # state changes, never a drain
    stale: bool = False  # the source changed while a reconcile was running
    task: asyncio.Task[None] | None = None
    cached_snapshot: VersionSnapshot | None = None

    @property
    def spec(self) -> ModelSpec | None:
        file_spec = self.source.spec if self.source is not None else None
        if self.spec_override is not None:
            if self.source is not None and self.source.config_error is not None:
                return None  # the operator's settings are unknown until model.yaml is fixed
            return self.spec_override.applied_to(file_spec)
        if file_spec is not None:
            return file_spec
        return self.last_good_spec

    @property
    def config_error(self) -> str | None:
        # Also with an override: it never sets the operator's fields, model.yaml does.
        return None if self.source is None else self.source.config_error

    def changed(self) -> None:
        """Something a snapshot shows changed: the next request builds a new one."""
        self.cached_snapshot = None

    def snapshot(self) -> VersionSnapshot:
        snapshot = self.cached_snapshot
        if snapshot is None:
            spec = self.spec
            labels = MappingProxyType(dict(spec.labels)) if spec is not None else {}
            versions = tuple(sorted(self.serving))
            reason = "" if versions else self.why_unavailable()
            snapshot = self.cached_snapshot = VersionSnapshot(self.name, versions, labels, reason)
        return snapshot

    def all_managed(self) -> list[ManagedServable]:
        return [*self.serving.values(), *self.loading.values(), *self.retiring]

    # -- what it says ---------------------------------------------------------------------

    def why_unavailable(self) -> str:
        if self.config_error:
            return self.config_error
        if self.missing or self.cycle:
            return waiting_reason(self.missing, self.spec, self.cycle)
        if self.failures:
            return "; ".join(f"version {f.version}: {f.error}" for f in self.failures.values())
        if self.loading:
            return "loading"
        return self.no_version_reason()

    def no_version_reason(self) -> str:
        if self.source is not None and self.source.versions and self.spec is not None:
            return (
                f"no version folder matches the version policy "
                f"({self.spec.policy.describe()}; found {sorted(self.source.versions)})"
            )
        return "no version folder found"

    def version_error(self, version: int) -> Exception:
        """Why ``version`` cannot be leased."""
        name = self.name
        if version in self.loading:
            return ModelNotReadyError(
                f"version {version} of model {name!r} is loading", retry_after_s=1.0
            )
        if version in self.failures:
            return ModelNotReadyError(
                f"version {version} of model {name!r} failed to load: "
                f"{self.failures[version].error}",
                retry_after_s=1.0,
            )
        on_disk = self.source is not None and version in self.source.versions
        if on_disk:
            policy = self.spec.policy.describe() if self.spec else "unknown"
            return ModelNotFoundError(
                f"version {version} of model {name!r} is not served (version policy: {policy})"
            )
        return ModelNotFoundError(f"model {name!r} has no version {version}")


def waiting_reason(
    missing: tuple[str, ...], spec: ModelSpec | None = None, cycle: tuple[str, ...] = ()
) -> str:
    """Why a model that needs others does not load (or serve) yet; a composite's ``spec``
    names the steps that call them, and a ``cycle`` through it says that it never will."""
    waiting = ""
    if missing:
        names = ", ".join(_with_roles(name, spec) for name in missing)
        waiting = f"waiting for model {names} to be available (a dependency)"
    if not cycle:
        return waiting
    in_cycle = (
        f"models {' -> '.join(cycle)} need each other in a cycle, so none of them can load: "
        f"remove one of the calls"
    )
    return f"{waiting}; but {in_cycle}" if waiting else in_cycle


def dependency_cycle(name: str, needs_of: Callable[[str], tuple[str, ...]]) -> tuple[str, ...]:
    """A cycle through ``name`` in the graph of models that need others (``needs_of``: the
    models one needs), as ``(name, ..., name)``, one of the shortest; empty when there is none."""
    paths: dict[str, tuple[str, ...]] = {name: (name,)}
    frontier = [name]
    while frontier:  # breadth first: the first path back to ``name`` is a shortest one
        following = []
        for model in frontier:
            for needed in needs_of(model):
                if needed == name:
                    return (*paths[model], name)
                if needed not in paths:
                    paths[needed] = (*paths[model], needed)
                    following.append(needed)
        frontier = following
    return ()


def _with_roles(name: str, spec: ModelSpec | None) -> str:
    roles = spec.roles_of(name) if spec is not None else ()
    return f"{name!r} ({', '.join(roles)})" if roles else repr(name)
