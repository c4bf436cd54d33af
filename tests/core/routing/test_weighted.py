"""Weighted routes: random by weight, sticky by key (rendezvous hashing), versions that are
not available."""

from __future__ import annotations

import hashlib
from types import MappingProxyType

import numpy as np

from serval.core.lifecycle.snapshot import VersionSnapshot
from serval.core.routing.weighted import (
    StickyKey,
    WeightedRoutes,
    rendezvous,
    routes_of,
    sticky_seed,
)
from serval.core.specs.traffic import StickySpec
from serval.core.tensors.datatypes import DataType
from serval.core.types import InferenceRequest, Tensor

KEYS = [f"user-{i}" for i in range(20_000)]


def snapshot(*versions: int) -> VersionSnapshot:
    return VersionSnapshot("m", versions, MappingProxyType({}))


def request(key: str | None = None, **parameters: str) -> InferenceRequest:
    x = Tensor("x", DataType.FP32, np.zeros(1, np.float32))
    return InferenceRequest("m", [x], parameters=parameters, routing_key=key)


def assignment(weights: dict[int, float]) -> dict[str, int]:
    routes = routes_of(weights)
    return {key: rendezvous(sticky_seed("m", key), routes) for key in KEYS}


def within_binomial(count: int, n: int, p: float) -> bool:
    """``count`` of ``n`` draws is within 5 standard deviations of ``n * p``."""
    return abs(count - n * p) <= 5 * (n * p * (1 - p)) ** 0.5


def test_random_routes_follow_the_weights() -> None:
    routes = WeightedRoutes({1: 90, 2: 10})
    shot = snapshot(1, 2)
    chosen = [routes.choose(request(), shot).primary for _ in range(10_000)]
    assert within_binomial(chosen.count(2), 10_000, 0.1)


def test_sticky_keys_follow_the_weights_and_never_change() -> None:
    shares = assignment({1: 70, 2: 20, 3: 10})
    for version, weight in ((1, 0.7), (2, 0.2), (3, 0.1)):
        assert within_binomial(list(shares.values()).count(version), len(KEYS), weight)
    routes = WeightedRoutes({1: 70, 2: 20, 3: 10}, StickyKey(StickySpec(header="X-User")))
    shot = snapshot(1, 2, 3)
    for key in KEYS[:200]:
        assert routes.choose(request(key), shot).primary == shares[key]
        assert routes.choose(request(key), shot).primary == shares[key]


def test_the_sticky_key_can_be_a_request_parameter() -> None:
    routes = WeightedRoutes({1: 50, 2: 50}, StickyKey(StickySpec(parameter="user_id")))
    shares = assignment({1: 50, 2: 50})
    for key in KEYS[:100]:
        assert routes.choose(request(user_id=key), snapshot(1, 2)).primary == shares[key]


def test_changing_one_weight_moves_only_the_keys_it_must() -> None:
    before = assignment({1: 50, 2: 25, 3: 25})
    # Version 1 gives up 10 points: only its keys move, to the others; no key of 2 or 3 moves.
    after = assignment({1: 40, 2: 25, 3: 25})
    moved = [key for key in KEYS if before[key] != after[key]]
    assert all(before[key] == 1 for key in moved)
    # The share that must move: 1 goes from 50% to 40/90 of the traffic.
    assert within_binomial(len(moved), len(KEYS), 0.5 - 40 / 90)
    # Version 3 gains: keys move to 3 alone.
    gained = assignment({1: 50, 2: 25, 3: 50})
    assert all(gained[key] == 3 for key in KEYS if before[key] != gained[key])
    # Version 2 goes away: only its keys move.
    without = assignment({1: 50, 3: 25})
    assert all(before[key] == 2 for key in KEYS if before[key] != without[key])


def test_a_version_that_is_not_available_hands_its_share_to_the_others() -> None:
    routes = WeightedRoutes({1: 50, 2: 50}, StickyKey(StickySpec(header="x-user")))
    both, only_one = snapshot(1, 2, 3), snapshot(1, 3)
    keys_on_1 = [k for k in KEYS[:200] if routes.choose(request(k), both).primary == 1]
    assert all(routes.choose(request(k), only_one).primary == 1 for k in KEYS[:200])
    assert all(routes.choose(request(k), both).primary == 1 for k in keys_on_1)  # and back
    # None of its versions available: the highest available version answers.
    assert WeightedRoutes({1: 1, 2: 1}).choose(request(), snapshot(3)).primary == 3


def test_a_request_without_a_key_is_routed_at_random() -> None:
    routes = WeightedRoutes({1: 50, 2: 50}, StickyKey(StickySpec(header="x-user")))
    chosen = {routes.choose(request(), snapshot(1, 2)).primary for _ in range(200)}
    assert chosen == {1, 2}


def test_the_seed_is_the_same_whichever_model_the_key_was_read_for_first() -> None:
    sticky = StickyKey(StickySpec(header="x-user"))
    for model in ("a", "b", "a"):
        assert sticky.seed(model, request("alice")) == sticky_seed(model, "alice")
    assert sticky_seed("a", "alice") != sticky_seed("b", "alice")


def test_sticky_assignment_is_the_same_in_every_release() -> None:
    # A user's version is a fixed function of (model, key, weights), in every process and in
    # every release: these digests of 20,000 keys' versions are what the first release
    # assigned. Making the hash cheaper must not move a single user.
    pinned = {
        ((1, 50), (2, 50)): "ec05caae45b5d8dfe797af32370b11f8",
        ((1, 90), (2, 10)): "717b6927a3056ff60282e4fe884b75c2",
        ((1, 70), (2, 20), (3, 10)): "44677f5282cac423ac527f011b72473f",
        ((3, 5), (7, 95)): "544e886fd19d74975cbefc4d388474d6",
    }
    for weights, digest in pinned.items():
        shares = assignment(dict(weights))
        chosen = "".join(str(shares[key]) for key in KEYS)
        assert hashlib.sha256(chosen.encode()).hexdigest()[:32] == digest, weights
    routes = WeightedRoutes({1: 50, 2: 50}, StickyKey(StickySpec(header="x-user")))
    chosen = "".join(str(routes.choose(request(k), snapshot(1, 2)).primary) for k in KEYS[:40])
    assert chosen == "2121221121122211211111211122211212221211"
