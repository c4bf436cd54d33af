"""A servable under the lifecycle manager's care (its state, health and leases), and the
handle a request holds on it."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from types import TracebackType

from serval.core.lifecycle.states import ServableId, ServableState, ServableStatus, StateMachine
from serval.core.servable import Servable
from serval.core.statistics import VersionStatistics
from serval.core.types import ServableMetadata


class ManagedServable:
    """One load of one version. Requests hold leases on it (``ServableHandle``) so that
    unloading waits for the requests in flight."""

    __slots__ = (
        "_drained",
        "_machine",
        "error",
        "fingerprint",
        "id",
        "inflight",
        "servable",
        "stats",
        "unloading",
    )

    def __init__(self, id: ServableId, fingerprint: str, stats: VersionStatistics) -> None:
        self.id = id
        self.fingerprint = fingerprint
        self.stats = stats
        self.servable: Servable | None = None
        self.error: str | None = None
        self.inflight = 0
        self.unloading = False  # the state is UNLOADING: a plain flag, read at each release
        self._machine = StateMachine()
        self._drained = asyncio.Event()

    @property
    def state(self) -> ServableState:
        return self._machine.state

    def advance(self, state: ServableState, error: str | None = None) -> None:
        self._machine.advance(state)
        if error is not None:
            self.error = error
        self.unloading = state is ServableState.UNLOADING
        if self.unloading and self.inflight == 0:
            self._drained.set()

    def status(self) -> ServableStatus:
        return ServableStatus(self.id, self.state, self.error)

    def workload(self) -> Workload:
        servable = self.servable
        return Workload(self.inflight, servable.workload() if servable is not None else 0)

    def lease(self) -> ServableHandle:
        """A lease for one request; only an AVAILABLE servable hands them out (the manager
        checks)."""
        return ServableHandle(self)

    async def drained(self, timeout_s: float) -> bool:
        """Wait until no request holds a lease; False if ``timeout_s`` passed first."""
        try:
            await asyncio.wait_for(self._drained.wait(), timeout_s)
        except TimeoutError:
            return False
        return True


class ServableHandle:
    """A lease on one loaded version, held by one request (or by a composite servable for one
    call). Release it exactly once: ``async with`` does, or call ``release()`` on every path
    (it is idempotent, so a ``finally`` that releases again is harmless). Slotted and free of
    asyncio objects: one is made per request."""

    __slots__ = ("_managed", "id", "servable", "stats")

    def __init__(self, managed: ManagedServable) -> None:
        servable = managed.servable
        assert servable is not None  # only AVAILABLE versions are leased (the manager checks)
        managed.inflight += 1
        self._managed: ManagedServable | None = managed
        self.id = managed.id
        self.servable = servable
        self.stats = managed.stats

    @property
    def metadata(self) -> ServableMetadata:
        return self.servable.metadata

    def release(self) -> None:
        managed = self._managed
        if managed is not None:
            self._managed = None
            managed.inflight -= 1
            if not managed.inflight and managed.unloading:
                managed._drained.set()

    async def __aenter__(self) -> ServableHandle:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()


@dataclass(frozen=True, slots=True)
class Workload:
    """The requests on one version now: leased (in flight), and of those the ones waiting in
    the version's own queue (a model with dynamic batching or instances; else 0)."""

    inflight: int
    waiting: int = 0


@dataclass(slots=True)
class FailedLoad:
    """A version that failed to load, and when to try it again."""

    version: int
    fingerprint: str
    error: str
    attempts: int
    retry_at: float  # time.monotonic()
