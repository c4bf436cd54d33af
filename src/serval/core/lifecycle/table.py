"""The lifecycle manager's read side: its models by name, and what requests and reports
read from them (snapshots and leases, readiness, statuses, statistics, workload)."""

from __future__ import annotations

from collections.abc import Iterable

from serval.core.errors import ModelNotFoundError, ModelNotReadyError
from serval.core.lifecycle.handles import ServableHandle, Workload
from serval.core.lifecycle.options import ManagerOptions
from serval.core.lifecycle.record import ModelRecord, waiting_reason
from serval.core.lifecycle.snapshot import VersionSnapshot
from serval.core.lifecycle.states import ServableId, ServableStatus
from serval.core.lifecycle.status import version_statuses
from serval.core.model_spec import ModelSpec
from serval.core.statistics import VersionStatistics


class ModelTable:
    """Changed only by the ``LifecycleManager`` (a subclass), on the event loop."""

    def __init__(self, options: ManagerOptions) -> None:
        self._options = options
        self._models: dict[str, ModelRecord] = {}
        self._started = False

    def snapshot(self, name: str) -> VersionSnapshot:
        """The versions of ``name`` a traffic policy may choose from now."""
        record = self._models.get(name)
        if record is not None:
            snapshot = record.cached_snapshot  # the hot path: built at the last change
            if snapshot is not None and (record.wanted or record.serving):
                return snapshot
        if record is None or (not record.wanted and not record.serving):
            raise ModelNotFoundError(
                f"unknown model {name!r}" if record is None else f"model {name!r} is not loaded"
            )
        return record.snapshot()

    def lease(self, name: str, version: int | None = None) -> ServableHandle:
        """A handle on ``version`` of ``name`` (the highest available one when None), for one
        request or call; release it on every path. Raises as a request for it would get."""
        record = self._models.get(name)
        if record is not None:  # the hot paths: managed.lease(), inlined
            if version is None:  # the highest available version (a composite's calls)
                snapshot = record.cached_snapshot
                if snapshot is not None and snapshot.versions:
                    managed = record.serving.get(snapshot.versions[-1])
                    if managed is not None:
                        return ServableHandle(managed)
            else:
                managed = record.serving.get(version)
                if managed is not None:
                    return ServableHandle(managed)
        snapshot = self.snapshot(name)  # an unknown or unloaded model
        record = self._models[name]
        if version is not None:
            raise record.version_error(version)
        if snapshot.latest is None:
            raise ModelNotReadyError(
                f"model {name!r} has no available version: {snapshot.unavailable}",
                retry_after_s=1.0,
            )
        return record.serving[snapshot.latest].lease()

    def _available(self, name: str) -> bool:
        record = self._models.get(name)
        return record is not None and bool(record.serving)

    def _missing(self, record: ModelRecord) -> tuple[str, ...]:
        """The models ``record`` needs that are not available now."""
        return tuple(d for d in record.needs if not self._available(d))

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
            missing = self._missing(record)
            if (missing or record.cycle) and not record.config_error:
                reason = waiting_reason(missing, record.spec, record.cycle)
                problems.append(f"model {record.name!r}: {reason}")
            elif record.config_error or record.failures or not record.serving:
                problems.append(f"model {record.name!r}: {record.why_unavailable()}")
        return not problems, "; ".join(problems)

    def model_ready(self, name: str, version: int | None = None) -> bool:
        record = self._models.get(name)
        if record is None:
            raise ModelNotFoundError(f"unknown model {name!r}")
        if record.needs and (record.cycle or self._missing(record)):
            return False
        if version is None:
            return bool(record.serving)
        return version in record.serving

    def why_not_ready(self, name: str, version: int | None = None) -> str:
        """Why ``model_ready(name, version)`` is False (a model it needs is missing, a load
        failed...); empty when it is ready."""
        if self.model_ready(name, version):
            return ""
        record = self._models[name]
        missing = self._missing(record)
        if missing or record.cycle:
            return waiting_reason(missing, record.spec, record.cycle)
        if version is not None and record.serving:
            return str(record.version_error(version))
        return record.why_unavailable()

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
        return version_statuses(record)

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
        return [
            stats
            for record in records
            for stats_version, stats in sorted(record.stats.items())
            if version is None or stats_version == version
        ]
