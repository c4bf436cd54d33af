"""Where bandit arms are counted: in memory by default; a ``BanditStore`` (Redis, in
``serval.storage``) shares the counts between replicas.

Requests never wait for the store: each bandit keeps its counts in memory and chooses from
them; what it learned since the last exchange (``ArmCounts`` deltas) is added to the shared
totals in the background every ``interval_s``, and the totals come back (``BanditSync``). A
store that cannot be reached leaves each replica on its own counts, logged once, and the
deltas are kept for when it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

logger = logging.getLogger("serval.routing")


@dataclass(slots=True)
class ArmCounts:
    """One arm (version): requests it answered, rewards received and their sum."""

    pulls: int = 0
    rewards: int = 0
    reward_sum: float = 0.0

    def add(self, other: ArmCounts) -> None:
        self.pulls += other.pulls
        self.rewards += other.rewards
        self.reward_sum += other.reward_sum

    @property
    def mean_reward(self) -> float | None:
        return self.reward_sum / self.rewards if self.rewards else None


class BanditStore(Protocol):
    """Totals of each bandit's arms, shared by replicas."""

    async def exchange(self, key: str, deltas: Mapping[int, ArmCounts]) -> dict[int, ArmCounts]:
        """Add ``deltas`` to the totals of the bandit ``key`` (``Bandit.key``) and return the
        totals of every arm; raises ``ConnectionError`` or ``OSError`` when the store cannot be
        reached."""
        ...

    async def close(self) -> None: ...

    def describe(self) -> str:
        """Where the store is, for the log (no credentials)."""
        ...


class SharedArms(Protocol):
    """What ``BanditSync`` exchanges for one bandit."""

    key: str  # the model and its bandit section: replicas with the same policy share it

    def take_deltas(self) -> dict[int, ArmCounts]:
        """The counts learned since the last call (and forget them)."""
        ...

    def give_back(self, deltas: Mapping[int, ArmCounts]) -> None:
        """Deltas an exchange could not deliver: to be sent again."""
        ...

    def adopt(self, totals: Mapping[int, ArmCounts]) -> None:
        """The shared totals, plus whatever was learned while they were fetched."""
        ...


class BanditSync:
    """Exchanges every bandit's counts with the store, in the background."""

    def __init__(
        self,
        store: BanditStore,
        bandits: Callable[[], Iterable[SharedArms]],
        interval_s: float = 0.5,
    ) -> None:
        self._store = store
        self._bandits = bandits
        self._interval_s = interval_s
        self._task: asyncio.Task[None] | None = None
        self._reachable = True

    def start(self) -> None:
        """Begin exchanging (on the event loop; once)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="serval-bandit-sync"
            )

    async def _run(self) -> None:
        while True:
            await self.exchange_all()
            await asyncio.sleep(self._interval_s)

    async def exchange_all(self) -> None:
        for arms in list(self._bandits()):
            deltas = arms.take_deltas()
            try:
                totals = await self._store.exchange(arms.key, deltas)
            except (ConnectionError, OSError, TimeoutError) as exc:
                arms.give_back(deltas)
                if self._reachable:
                    self._reachable = False
                    logger.warning(
                        "bandit state store %s is unreachable (%s); each replica learns from "
                        "its own feedback until it is back",
                        self._store.describe(),
                        exc,
                    )
                return
            if not self._reachable:
                self._reachable = True
                logger.info("bandit state store %s is reachable again", self._store.describe())
            arms.adopt(totals)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        with contextlib.suppress(Exception):
            await self.exchange_all()  # what was learned last
        with contextlib.suppress(Exception):
            await self._store.close()
