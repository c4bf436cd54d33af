"""Weighted routes: versions chosen by weight, at random or by a sticky key.

Sticky assignment is weighted rendezvous hashing (highest random weight): the key and the
model give one 64-bit hash; each version mixes it with its own number into a uniform ``u`` and
scores ``-ln(u) / weight``; the lowest score wins. Each version wins with probability weight /
total, the same key wins the same version on every replica and after a restart (no state),
and a change of one weight moves only the keys it must: raising a version's weight moves keys
to it alone, lowering it moves keys away from it alone, and a version that goes away hands its
keys to the others in proportion to their weights, while every other key stays (a cumulative
split of [0, 1) would shift the keys of the versions after the changed one too).
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Mapping, Sequence

from serval.core.lifecycle.snapshot import VersionSnapshot
from serval.core.routing.policy import LATEST, Choice
from serval.core.specs.traffic import StickySpec
from serval.core.types import InferenceRequest

_MASK = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_TO_UNIT = 2.0**-53


def sticky_seed(model: str, key: str) -> int:
    """The one hash of a request's sticky key: 64 bits of BLAKE2b over (model, key), the same
    in every process (unlike ``hash()``, which Python salts per process)."""
    digest = hashlib.blake2b(f"{model}\0{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def _unit(seed: int, version: int) -> float:
    """A uniform number in (0, 1) from ``seed`` and ``version``: SplitMix64's finaliser, so
    versions get independent draws from one hash."""
    z = (seed + (version * _GOLDEN)) & _MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    z ^= z >> 31
    return ((z >> 11) + 0.5) * _TO_UNIT


def rendezvous(seed: int, weighted: Sequence[tuple[int, float]]) -> int:
    """The version ``seed`` lands on among (version, weight) pairs with a weight above 0."""
    best = weighted[0][0]
    best_score = math.inf
    for version, weight in weighted:
        if weight > 0.0:
            score = -math.log(_unit(seed, version)) / weight
            if score < best_score:
                best, best_score = version, score
    return best


def draw(weighted: Sequence[tuple[int, float]], total: float) -> int:
    """A version drawn at random by weight (one random number)."""
    point = random.random() * total
    for version, weight in weighted:
        point -= weight
        if point < 0.0:
            return version
    return weighted[-1][0]  # rounding left a sliver: the last


class StickyKey:
    """Reads a request's sticky key: the header the adapter put on ``routing_key``, or a
    request parameter. None when the request carries none (it is routed at random)."""

    __slots__ = ("header", "parameter")

    def __init__(self, spec: StickySpec) -> None:
        self.header = spec.header.lower() if spec.header is not None else None
        self.parameter = spec.parameter

    def seed(self, model: str, request: InferenceRequest) -> int | None:
        if self.parameter is not None:
            value = request.parameters.get(self.parameter)
            key = None if value is None else str(value)
        else:
            key = request.routing_key
        return None if key is None else sticky_seed(model, key)


class WeightedRoutes:
    """``routes``: each request to a version by weight (sticky by key when asked). Versions
    that are not available now are left out and their share goes to the others; with none of
    them available, the highest available version answers."""

    __slots__ = ("_available", "_live", "_total", "sticky", "weights")

    def __init__(self, weights: Mapping[int, float], sticky: StickyKey | None = None) -> None:
        self.weights = dict(sorted(weights.items()))
        self.sticky = sticky
        self._available: tuple[int, ...] | None = None  # the snapshot's versions last seen
        self._live: tuple[tuple[int, float], ...] = ()
        self._total = 0.0

    def live_weights(self, available: tuple[int, ...]) -> tuple[tuple[int, float], ...]:
        """(version, weight) of the routes that can answer now; kept until the snapshot's
        versions change (the same tuple object until then)."""
        if available is not self._available:
            self._live = tuple(
                (v, w) for v, w in self.weights.items() if w > 0.0 and v in available
            )
            self._total = sum(w for _, w in self._live)
            self._available = available
        return self._live

    def choose(self, request: InferenceRequest, snapshot: VersionSnapshot) -> Choice:
        live = self.live_weights(snapshot.versions)
        if not live:  # the highest available version, or why none is
            return LATEST.choose(request, snapshot)
        if len(live) == 1:
            return Choice.of(live[0][0])
        seed = None if self.sticky is None else self.sticky.seed(snapshot.name, request)
        version = draw(live, self._total) if seed is None else rendezvous(seed, live)
        return Choice.of(version)
