"""A servable under the lifecycle manager's care: its state, health and leases."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from serval.core.lifecycle.states import ServableId, ServableState, ServableStatus, StateMachine
from serval.core.servable import Servable
from serval.core.statistics import VersionStatistics


class ManagedServable:
    """One load of one version. Requests hold a lease on it (``acquire``/``release``) so that
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
    )

    def __init__(self, id: ServableId, fingerprint: str, stats: VersionStatistics) -> None:
        self.id = id
        self.fingerprint = fingerprint
        self.stats = stats
        self.servable: Servable | None = None
        self.error: str | None = None
        self.inflight = 0
        self._machine = StateMachine()
        self._drained = asyncio.Event()

    @property
    def state(self) -> ServableState:
        return self._machine.state

    def advance(self, state: ServableState, error: str | None = None) -> None:
        self._machine.advance(state)
        if error is not None:
            self.error = error
        if state is ServableState.UNLOADING and self.inflight == 0:
            self._drained.set()

    def status(self) -> ServableStatus:
        return ServableStatus(self.id, self.state, self.error)

    def workload(self) -> Workload:
        return Workload(self.inflight, int(getattr(self.servable, "waiting", 0)))

    def acquire(self) -> Servable:
        """Take a lease; only an AVAILABLE servable hands out leases (checked by the caller)."""
        self.inflight += 1
        assert self.servable is not None
        return self.servable

    def release(self) -> None:
        self.inflight -= 1
        if self.inflight == 0 and self._machine.state is ServableState.UNLOADING:
            self._drained.set()

    async def drained(self, timeout_s: float) -> bool:
        """Wait until no request holds a lease; False if ``timeout_s`` passed first."""
        try:
            await asyncio.wait_for(self._drained.wait(), timeout_s)
        except TimeoutError:
            return False
        return True


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
