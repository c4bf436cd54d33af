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

import math
import random
import zlib
from collections.abc import Mapping, Sequence

from serval.core.lifecycle.snapshot import VersionSnapshot
from serval.core.routing.policy import LATEST, Choice
from serval.core.specs.traffic import StickySpec
from serval.core.types import InferenceRequest

_MASK32 = 0xFFFFFFFF
_TO_UNIT = 2.0**-32


def sticky_seed(model: str, key: str) -> int:
    """The one hash of a request's sticky key: CRC-32 of (model, key), the same in every
    process and on every platform (unlike ``hash()``, which Python salts per process). CRC is
    no good mixer by itself: ``_unit`` mixes it with each version's salt."""
    return zlib.crc32(key.encode(), zlib.crc32(f"{model}\0".encode()))


def version_salt(version: int) -> int:
    """A 32-bit constant per version, xored into the key's hash before mixing."""
    return _mix(version * 0x9E3779B9 & _MASK32)


def route_salt(version: int) -> int:
    """``version_salt(version)`` with the mixer's first step applied (``s ^ (s >> 16)``), as
    ``rendezvous`` wants it: that step is linear over xor, so ``_mix(seed ^ salt)`` starts
    with ``seed ^ (seed >> 16)``, once per request, xored with this constant."""
    salt = version_salt(version)
    return salt ^ (salt >> 16)


def _mix(z: int) -> int:
    """MurmurHash3's 32-bit finaliser: every input bit flips each output bit half the time.
    32 bits, not 64: Python's integers stay small and this stays cheap (once per version per
    request)."""
    z = ((z ^ (z >> 16)) * 0x85EBCA6B) & _MASK32
    z = ((z ^ (z >> 13)) * 0xC2B2AE35) & _MASK32
    return z ^ (z >> 16)


Route = tuple[int, float, int]  # version, weight, the version's route_salt


def routes_of(weights: Mapping[int, float]) -> tuple[Route, ...]:
    """(version, weight, route salt) in version order, for ``rendezvous``."""
    return tuple((v, float(w), route_salt(v)) for v, w in sorted(weights.items()))


def rendezvous(seed: int, routes: Sequence[Route]) -> int:
    """The version ``seed`` lands on among ``routes`` with a weight above 0: the lowest
    ``-ln(u) / weight``, ``u`` uniform in (0, 1) from ``_mix(seed ^ version_salt(version))``.
    The same arithmetic as ever, to the bit (a sticky key keeps its version across releases),
    with the mixer's first step hoisted out of the loop (see ``route_salt``)."""
    best = routes[0][0]
    best_score = math.inf
    log = math.log
    folded = seed ^ (seed >> 16)
    for version, weight, salt in routes:
        if weight > 0.0:
            z = ((folded ^ salt) * 0x85EBCA6B) & _MASK32  # the rest of _mix, inlined
            z = ((z ^ (z >> 13)) * 0xC2B2AE35) & _MASK32
            score = -log(((z ^ (z >> 16)) + 0.5) * _TO_UNIT) / weight
            if score < best_score:
                best, best_score = version, score
    return best


def draw(routes: Sequence[Route], total: float) -> int:
    """A version drawn at random by weight (one random number)."""
    point = random.random() * total
    for version, weight, _ in routes:
        point -= weight
        if point < 0.0:
            return version
    return routes[-1][0]  # rounding left a sliver: the last


class StickyKey:
    """Reads a request's sticky key: the header the adapter put on ``routing_key``, or a
    request parameter. None when the request carries none (it is routed at random)."""

    __slots__ = ("_model", "_model_crc", "header", "parameter")

    def __init__(self, spec: StickySpec) -> None:
        self.header = spec.header.lower() if spec.header is not None else None
        self.parameter = spec.parameter
        self._model = ""  # the model whose name's CRC is cached: the policy's, in practice
        self._model_crc = zlib.crc32(b"\0")

    def seed(self, model: str, request: InferenceRequest) -> int | None:
        """``sticky_seed(model, key)``, with the model's part computed once."""
        if self.parameter is not None:
            value = request.parameters.get(self.parameter)
            key = None if value is None else str(value)
        else:
            key = request.routing_key
        if key is None:
            return None
        if model != self._model:
            self._model, self._model_crc = model, zlib.crc32(f"{model}\0".encode())
        return zlib.crc32(key.encode(), self._model_crc)


class WeightedRoutes:
    """``routes``: each request to a version by weight (sticky by key when asked). Versions
    that are not available now are left out and their share goes to the others; with none of
    them available, the highest available version answers."""

    __slots__ = ("_available", "_choices", "_live", "_total", "routes", "sticky", "weights")

    def __init__(self, weights: Mapping[int, float], sticky: StickyKey | None = None) -> None:
        self.weights = dict(sorted(weights.items()))
        self.routes = routes_of(self.weights)
        self.sticky = sticky
        self._available: tuple[int, ...] | None = None  # the snapshot's versions last seen
        self._live: tuple[Route, ...] = ()
        self._total = 0.0
        # Version -> its Choice: a subscript per request, not a call of Choice.of.
        self._choices = {v: Choice.of(v) for v in self.weights}

    def _refresh(self, available: tuple[int, ...]) -> None:
        """The routes that can answer now; kept until the snapshot's versions change (the
        same tuple object until then)."""
        self._live = tuple(r for r in self.routes if r[1] > 0.0 and r[0] in available)
        self._total = sum(r[1] for r in self._live)
        self._available = available

    def choose(self, request: InferenceRequest, snapshot: VersionSnapshot) -> Choice:
        if snapshot.versions is not self._available:
            self._refresh(snapshot.versions)
        live = self._live
        if len(live) < 2:  # one route left, or none: the highest available version
            return Choice.of(live[0][0]) if live else LATEST.choose(request, snapshot)
        sticky = self.sticky
        seed = None if sticky is None else sticky.seed(snapshot.name, request)
        version = draw(live, self._total) if seed is None else rendezvous(seed, live)
        return self._choices[version]
