"""The traffic section's schema: versions as strings, exactly one chooser, clear errors."""

from __future__ import annotations

from typing import Any

import pytest

from serval.core.errors import ModelConfigError
from serval.core.lifecycle.version_policy import VersionPolicy
from serval.core.model_spec import ModelSpec
from serval.core.specs.traffic import TrafficSpec


def parse(traffic: Any) -> TrafficSpec:
    spec = ModelSpec.parse({"version_policy": "all", "traffic": traffic}, source="model.yaml")
    assert spec.traffic is not None
    return spec.traffic


def test_the_issue_examples_parse() -> None:
    routes = parse({"routes": {"1": 90, 2: 10}, "sticky": {"header": "x-user-id"}})
    assert routes.route_weights == {1: 90.0, 2: 10.0}
    assert routes.as_json() == {"routes": {"1": 90.0, "2": 10.0}, "sticky": {"header": "x-user-id"}}
    canary = parse(
        {
            "canary": {
                "version": "2",
                "steps": [5, 25, 50, 100],
                "step_s": 300,
                "guardrails": {"max_error_rate": 0.02, "max_p99_ms": 250, "min_requests": 50},
            },
            "shadow": {"versions": ["3"], "sample": 1.0},
        }
    )
    assert canary.canary is not None and canary.canary.version_number == 2
    assert canary.shadow is not None and canary.shadow.version_numbers == (3,)
    bandit = parse({"bandit": {"versions": ["1", 2], "algorithm": "ucb1"}})
    assert bandit.bandit is not None and bandit.bandit.version_numbers == (1, 2)
    assert parse({"shadow": {"versions": [3], "sample": 0.5}}).routes is None


@pytest.mark.parametrize(
    ("traffic", "message"),
    [
        ({"routes": {"one": 1}}, "traffic.routes: route 'one': version must be a positive"),
        ({"routes": {"0": 1}}, "traffic.routes: route '0': version must be a positive"),
        ({"routes": {"1": -1}}, "traffic.routes: route '1': weight must be a number >= 0"),
        ({"routes": {"1": 0}}, "traffic.routes: routes need a weight above 0"),
        ({"routes": {}}, "traffic.routes: routes needs at least one version"),
        (
            {"routes": {"1": 1}, "bandit": {"versions": ["1", "2"]}},
            "traffic: give one of routes, canary and bandit, not routes and bandit",
        ),
        ({"sticky": {"header": "x"}, "shadow": {"versions": ["1"]}}, "sticky applies to routes"),
        ({"routes": {"1": 1}, "sticky": {}}, "traffic.sticky: sticky needs exactly one of"),
        ({"routes": {"1": 1}, "sticky": {"header": "x y"}}, "traffic.sticky.header: String"),
        ({"canary": {"version": "x"}}, "traffic.canary.version: version must be a positive"),
        ({"canary": {"version": "2", "steps": [50, 5]}}, "traffic.canary.steps: steps must not"),
        ({"canary": {"version": "2", "steps": [150]}}, "traffic.canary.steps: steps are percent"),
        ({"canary": {"version": "2", "step_s": 0}}, "traffic.canary.step_s: Input should be"),
        ({"canary": {"version": "2", "guardrails": {"p99": 1}}}, "guardrails.p99: unknown key"),
        ({"bandit": {"versions": ["1"]}}, "traffic.bandit.versions: Tuple should have at least"),
        ({"bandit": {"versions": ["1", "1"]}}, "traffic.bandit.versions: versions must differ"),
        ({"bandit": {"versions": ["1", "2"], "algorithm": "x"}}, "traffic.bandit.algorithm"),
        ({"shadow": {"versions": ["2"], "sample": 2}}, "traffic.shadow.sample: Input should be"),
        ({}, "traffic: traffic needs routes, canary, bandit or shadow"),
        ({"route": {"1": 1}}, "traffic.route: unknown key"),
    ],
)
def test_bad_policies_name_the_field(traffic: Any, message: str) -> None:
    with pytest.raises(ModelConfigError) as info:
        parse(traffic)
    assert message in info.value.message


def test_unserved_names_the_first_field_with_a_version_not_served() -> None:
    traffic = parse({"routes": {"1": 1, "2": 1}, "shadow": {"versions": ["4"]}})
    every = VersionPolicy("all")
    assert traffic.unserved(every, {1, 2, 4}, missing_ok=False) is None
    assert traffic.unserved(every, {1, 4}, missing_ok=False) == (
        "traffic.routes.2: version 2 is not served (version_policy serves 1, 4)"
    )
    # model.yaml: a version whose folder is missing is fine if the version policy would serve it
    assert traffic.unserved(every, {1, 4}, missing_ok=True) is None
    specific = VersionPolicy("specific", versions=(1, 2))
    assert traffic.unserved(specific, {1, 2}, missing_ok=True) == (
        "traffic.shadow.versions.0: version 4 is not served (version_policy serves 1, 2)"
    )
    latest_two = VersionPolicy("latest", 2)
    assert traffic.unserved(latest_two, {2, 3}, missing_ok=True) == (
        "traffic.routes.1: version 1 is not served (version_policy serves 2, 3)"
    )


def test_a_canary_needs_a_stable_version_the_policy_serves() -> None:
    traffic = parse({"canary": {"version": "2"}})
    assert traffic.unserved(VersionPolicy("all"), {1, 2}, missing_ok=False) is None
    message = "traffic.canary.version: a canary needs a stable version beside it"
    for policy in (VersionPolicy("latest", 1), VersionPolicy("specific", versions=(2,))):
        problem = traffic.unserved(policy, {1, 2}, missing_ok=True)
        assert problem is not None and problem.startswith(message)
