"""Routing: the version a request names, a label, the default policy, a model's policy."""

from __future__ import annotations

from types import MappingProxyType

import numpy as np
import pytest

from serval.core.errors import InvalidInputError, ModelNotFoundError, ModelNotReadyError
from serval.core.lifecycle.snapshot import VersionSnapshot
from serval.core.routing.policy import Choice, TrafficPolicy
from serval.core.routing.router import Router
from serval.core.tensors.datatypes import DataType
from serval.core.types import InferenceRequest, Tensor

SNAPSHOT = VersionSnapshot("m", (1, 2, 3), MappingProxyType({"stable": 1, "gone": 7}))


def request(version: str | None = None) -> InferenceRequest:
    x = Tensor("x", DataType.FP32, np.zeros(1, np.float32))
    return InferenceRequest("m", [x], model_version=version)


class AlwaysFirst:
    """A model's own policy: always its lowest version, with the others as shadows."""

    def choose(self, request: InferenceRequest, snapshot: VersionSnapshot) -> Choice:
        return Choice(snapshot.versions[0], snapshot.versions[1:], route="first")


def test_default_is_the_latest_available_version() -> None:
    choice = Router().choose(request(), SNAPSHOT)
    assert choice == Choice(3)
    assert choice is Router().choose(request(), SNAPSHOT)  # no allocation per request


def test_a_named_version_or_label_is_chosen() -> None:
    router = Router()
    assert router.choose(request("2"), SNAPSHOT).primary == 2
    assert router.choose(request(""), SNAPSHOT).primary == 3  # empty: the server chooses
    assert router.choose(request(), SNAPSHOT, label="stable").primary == 1
    # Not available: chosen all the same; leasing it answers why (404 or 503).
    assert router.choose(request("9"), SNAPSHOT).primary == 9
    assert router.choose(request(), SNAPSHOT, label="gone").primary == 7
    with pytest.raises(ModelNotFoundError, match="model 'm' has no version label 'nope'"):
        router.choose(request(), SNAPSHOT, label="nope")
    with pytest.raises(InvalidInputError, match="positive integer"):
        router.choose(request("x1"), SNAPSHOT)


def test_no_available_version_is_not_ready_with_the_reason() -> None:
    empty = VersionSnapshot("m", (), {}, "version 1: corrupt file")
    with pytest.raises(ModelNotReadyError, match="no available version: version 1: corrupt"):
        Router().choose(request(), empty)


def test_a_models_policy_chooses_unless_the_request_names_a_version() -> None:
    router = Router()
    policy: TrafficPolicy = AlwaysFirst()
    router.set_policy("m", policy)
    assert router.choose(request(), SNAPSHOT) == Choice(1, (2, 3), "first")
    assert router.choose(request("2"), SNAPSHOT) == Choice(2)  # bypasses the policy
    assert router.choose(request(), SNAPSHOT, label="stable") == Choice(1)
    other = VersionSnapshot("other", (4,), {})
    assert router.choose(request(), other) == Choice(4)  # other models keep the default
    router.set_policy("m", None)
    assert router.choose(request(), SNAPSHOT) == Choice(3)
