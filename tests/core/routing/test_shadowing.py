"""Shadow copies on top of a choice, and the pinned version of a rollback."""

from __future__ import annotations

from types import MappingProxyType

import numpy as np

from serval.core.lifecycle.snapshot import VersionSnapshot
from serval.core.routing.policy import LATEST, Choice
from serval.core.routing.shadowing import Pinned, ShadowCopies
from serval.core.routing.weighted import WeightedRoutes
from serval.core.tensors.datatypes import DataType
from serval.core.types import InferenceRequest, Tensor

REQUEST = InferenceRequest("m", [Tensor("x", DataType.FP32, np.zeros(1, np.float32))])


def snapshot(*versions: int) -> VersionSnapshot:
    return VersionSnapshot("m", versions, MappingProxyType({}))


def test_a_sample_of_requests_gets_copies_to_the_available_shadow_versions() -> None:
    policy = ShadowCopies(LATEST, (2, 4), sample=0.5)
    choices = [policy.choose(REQUEST, snapshot(1, 2, 3)) for _ in range(2000)]
    shadowed = [c for c in choices if c.shadows]
    assert all(c == Choice(3, (2,)) for c in shadowed)  # 4 is not available
    assert 800 < len(shadowed) < 1200
    assert all(c is Choice.of(3) for c in choices if not c.shadows)


def test_the_primary_never_shadows_itself() -> None:
    policy = ShadowCopies(WeightedRoutes({1: 1, 2: 1}), (2,), sample=1.0)
    choices = {policy.choose(REQUEST, snapshot(1, 2)) for _ in range(200)}
    assert choices == {Choice(1, (2,)), Choice.of(2)}


def test_pinned_answers_its_version_or_the_latest_while_it_is_gone() -> None:
    assert Pinned(1).choose(REQUEST, snapshot(1, 2)) is Choice.of(1)
    assert Pinned(1).choose(REQUEST, snapshot(2, 3)).primary == 3
