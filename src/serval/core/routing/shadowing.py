"""Policies that wrap or replace a model's chooser: shadow copies on top of any choice, and
the pinned version a rollback sends all traffic to."""

from __future__ import annotations

import random

from serval.core.lifecycle.snapshot import VersionSnapshot
from serval.core.routing.policy import LATEST, Choice, TrafficPolicy
from serval.core.types import InferenceRequest


class ShadowCopies:
    """``shadow``: the inner policy's choice, plus copies to the shadow versions for a
    ``sample`` share of requests (one random draw). A shadow version that is the primary or
    not available now gets no copy. The choices are built once per primary version and kept
    until the snapshot's versions change."""

    __slots__ = ("_available", "_choices", "inner", "sample", "versions")

    def __init__(self, inner: TrafficPolicy, versions: tuple[int, ...], sample: float) -> None:
        self.inner = inner
        self.versions = versions
        self.sample = sample
        self._available: tuple[int, ...] | None = None
        self._choices: dict[int, Choice] = {}

    def choose(self, request: InferenceRequest, snapshot: VersionSnapshot) -> Choice:
        choice = self.inner.choose(request, snapshot)
        if self.sample < 1.0 and random.random() >= self.sample:
            return choice
        available = snapshot.versions
        if available is not self._available:
            self._choices = {}
            self._available = available
        shadowed = self._choices.get(choice.primary)
        if shadowed is None:
            shadows = tuple(v for v in self.versions if v != choice.primary and v in available)
            shadowed = Choice(choice.primary, shadows) if shadows else choice
            self._choices[choice.primary] = shadowed
        return shadowed


class Pinned:
    """Every request to ``version`` (a rollback's target); the highest available version
    while it is not available."""

    __slots__ = ("choice", "version")

    def __init__(self, version: int) -> None:
        self.version = version
        self.choice = Choice.of(version)

    def choose(self, request: InferenceRequest, snapshot: VersionSnapshot) -> Choice:
        if self.version in snapshot.versions:
            return self.choice
        return LATEST.choose(request, snapshot)
