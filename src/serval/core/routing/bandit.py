"""Bandits: each request to the version (arm) an algorithm picks from the rewards received
through the feedback API (``Feedback`` events).

- ``thompson``: one draw from each arm's Beta(1 + reward sum, 1 + rewards - reward sum)
  posterior (rewards clipped to [0, 1]); the highest draw wins.
- ``epsilon_greedy``: with probability epsilon a random arm, else the best mean reward.
- ``ucb1``: the best mean + sqrt(2 ln N / n), N the rewards of all arms, n the arm's.

An arm with no reward yet is tried first (the one with the fewest requests), by every
algorithm. Counts live in memory; with a ``BanditStore`` they are shared (``bandit_store``).
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections.abc import Mapping

from serval.core.lifecycle.snapshot import VersionSnapshot
from serval.core.routing.bandit_store import ArmCounts
from serval.core.routing.policy import LATEST, Choice
from serval.core.specs.traffic import BanditSpec
from serval.core.types import InferenceRequest


class Bandit:
    """The ``bandit`` policy and its arms. ``arms`` are the counts it chooses from: the shared
    totals last fetched plus what this replica learned since (``pending``)."""

    __slots__ = ("_available", "_live", "algorithm", "arms", "epsilon", "key", "model", "pending")

    def __init__(self, model: str, spec: BanditSpec) -> None:
        self.model = model
        # What replicas share counts under: the model and its bandit section, so that a new
        # policy starts afresh and the same one (every replica, a restart) goes on.
        section = json.dumps(spec.model_dump(mode="json"), sort_keys=True).encode()
        self.key = f"{model}:{hashlib.sha1(section).hexdigest()[:12]}"
        self.algorithm = spec.algorithm
        self.epsilon = spec.epsilon
        self.arms = {version: ArmCounts() for version in spec.version_numbers}
        self.pending = {version: ArmCounts() for version in spec.version_numbers}
        self._available: tuple[int, ...] | None = None
        self._live: tuple[int, ...] = ()

    def choose(self, request: InferenceRequest, snapshot: VersionSnapshot) -> Choice:
        available = snapshot.versions
        if available is not self._available:
            self._live = tuple(v for v in self.arms if v in available)
            self._available = available
        live = self._live
        if not live:
            return LATEST.choose(request, snapshot)
        return Choice.of(self.pick(live))

    def pick(self, live: tuple[int, ...]) -> int:
        arms = self.arms
        untried = [v for v in live if not arms[v].rewards]
        if untried:
            return min(untried, key=lambda v: arms[v].pulls)
        if self.algorithm == "thompson":
            return max(live, key=self._thompson_draw)
        if self.algorithm == "epsilon_greedy":
            if random.random() < self.epsilon:
                return random.choice(live)
            return max(live, key=lambda v: arms[v].reward_sum / arms[v].rewards)
        total = sum(arms[v].rewards for v in live)
        log_total = math.log(total)
        return max(
            live,
            key=lambda v: (
                arms[v].reward_sum / arms[v].rewards + math.sqrt(2.0 * log_total / arms[v].rewards)
            ),
        )

    def _thompson_draw(self, version: int) -> float:
        arm = self.arms[version]
        successes = min(max(arm.reward_sum, 0.0), float(arm.rewards))
        return random.betavariate(1.0 + successes, 1.0 + arm.rewards - successes)

    # -- learning --------------------------------------------------------------------------

    def pulled(self, version: int) -> None:
        """``version`` answered a request."""
        arm = self.arms.get(version)
        if arm is not None:
            arm.pulls += 1
            self.pending[version].pulls += 1

    def rewarded(self, version: int, reward: float) -> None:
        """A reward for a request ``version`` answered."""
        arm = self.arms.get(version)
        if arm is not None:
            arm.rewards += 1
            arm.reward_sum += reward
            pending = self.pending[version]
            pending.rewards += 1
            pending.reward_sum += reward

    # -- sharing (BanditSync) --------------------------------------------------------------

    def take_deltas(self) -> dict[int, ArmCounts]:
        deltas = self.pending
        self.pending = {version: ArmCounts() for version in self.arms}
        return deltas

    def give_back(self, deltas: Mapping[int, ArmCounts]) -> None:
        for version, delta in deltas.items():
            if version in self.pending:
                self.pending[version].add(delta)

    def adopt(self, totals: Mapping[int, ArmCounts]) -> None:
        for version in self.arms:
            arm = ArmCounts()
            shared = totals.get(version)
            if shared is not None:
                arm.add(shared)
            arm.add(self.pending[version])  # learned while the exchange ran
            self.arms[version] = arm
