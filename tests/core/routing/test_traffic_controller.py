"""The traffic controller on a lifecycle manager with fake loaders: the policy of model.yaml,
applied without reloading; the API's policy and rollback; served counts; bandits learning from
Feedback events; a canary rolling back from request records."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest

from serval.core.dataplane import DataPlane, ServerMetadata
from serval.core.errors import InvalidInputError, ModelNotFoundError
from serval.core.feedback import Feedback
from serval.core.lifecycle.states import ServableId
from serval.core.records import RequestRecord
from serval.core.routing.router import Router
from serval.core.routing.shadow import ShadowBook
from serval.core.routing.traffic import TrafficController
from tests.core.fakes import Harness, echo_request


def serve(h: Harness) -> tuple[TrafficController, DataPlane, Router]:
    router = Router()
    controller = TrafficController(h.manager, router, h.bus, ShadowBook())
    return controller, DataPlane(h.manager, h.bus, ServerMetadata("s", "0", ()), router), router


async def versions(dataplane: DataPlane, n: int, **routing_key: str) -> list[int]:
    answered = []
    for _ in range(n):
        request = echo_request("m")
        request.routing_key = routing_key.get("key")
        response = await dataplane.infer(request)
        assert response.model_version is not None
        answered.append(int(response.model_version))
    return answered


def model(h: Harness, traffic: dict[str, Any] | None, versions: int = 3) -> None:
    for version in range(1, versions + 1):
        h.source.add_version("m", version)
    spec: dict[str, Any] = {"version_policy": "all"}
    if traffic is not None:
        spec["traffic"] = traffic
    h.source.set_spec("m", spec)


def test_model_yaml_s_policy_applies_and_a_change_of_it_reloads_nothing() -> None:
    h = Harness()
    model(h, {"routes": {"1": 1, "2": 0}})

    async def test(h: Harness) -> None:
        controller, dataplane, _ = serve(h)
        await h.manager.start()
        assert set(await versions(dataplane, 20)) == {1}
        loads = list(h.loaders.loaded)
        h.source.set_spec("m", {"version_policy": "all", "traffic": {"routes": {"2": 1}}})
        await h.sync()
        assert h.loaders.loaded == loads  # no version reloaded
        assert set(await versions(dataplane, 20)) == {2}
        state = controller.state("m")
        assert state["source"] == "model.yaml"
        assert state["policy"] == {"routes": {"2": 1.0}}
        assert state["served"] == {"2": 20}
        h.source.set_spec("m", {"version_policy": "all"})  # no traffic section: the default
        await h.sync()
        assert set(await versions(dataplane, 5)) == {3}
        assert controller.state("m") == {"policy": None, "source": None, "served": {}}

    h.run(test)


def test_put_lasts_until_model_yaml_s_section_changes() -> None:
    h = Harness()
    model(h, {"routes": {"1": 1}})

    async def test(h: Harness) -> None:
        controller, dataplane, _ = serve(h)
        await h.manager.start()
        state = controller.put("m", {"routes": {"2": 1}, "sticky": {"header": "X-User"}})
        assert (state["source"], state["policy"]["sticky"]) == ("api", {"header": "X-User"})
        assert set(await versions(dataplane, 10, key="u1")) == {2}
        await h.sync()  # a poll with model.yaml unchanged: the API's policy stays
        assert controller.state("m")["source"] == "api"
        h.source.set_spec("m", {"version_policy": "all", "traffic": {"routes": {"3": 1}}})
        await h.sync()
        assert controller.state("m")["source"] == "model.yaml"
        assert set(await versions(dataplane, 10)) == {3}

    h.run(test)


def test_put_and_rollback_refuse_bad_requests_naming_the_field() -> None:
    h = Harness()
    model(h, None, versions=2)

    async def test(h: Harness) -> None:
        controller, _, _ = serve(h)
        await h.manager.start()
        with pytest.raises(ModelNotFoundError, match="unknown model 'nope'"):
            controller.put("nope", {"routes": {"1": 1}})
        with pytest.raises(InvalidInputError, match=r"traffic.routes.3: version 3 is not served"):
            controller.put("m", {"routes": {"1": 1, "3": 1}})
        with pytest.raises(InvalidInputError, match=r"^traffic.canary.steps: steps must not"):
            controller.put("m", {"canary": {"version": "2", "steps": [9, 1]}})
        with pytest.raises(InvalidInputError, match="body must be a JSON object"):
            controller.put("m", ["routes"])
        with pytest.raises(InvalidInputError, match="has no traffic policy to roll back"):
            controller.rollback("m")
        with pytest.raises(InvalidInputError, match=r"^to: version 7 is not served"):
            controller.rollback("m", "7")
        with pytest.raises(InvalidInputError, match=r"^to: model version must be a positive"):
            controller.rollback("m", "x")

    h.run(test)


def test_rollback_sends_everything_to_the_stable_version_or_to_the_one_named() -> None:
    h = Harness()
    model(h, {"canary": {"version": "3", "steps": [50], "step_s": 3600}})

    async def test(h: Harness) -> None:
        controller, dataplane, _ = serve(h)
        await h.manager.start()
        assert set(await versions(dataplane, 60)) == {2, 3}
        state = controller.rollback("m")
        assert state["canary"]["state"] == "rolled_back"
        assert state["canary"]["reason"] == "manual"
        assert state["rollback"] == {"to": "2", "reason": "manual"}
        assert state["source"] == "api"
        assert set(await versions(dataplane, 20)) == {2}
        await h.sync()  # model.yaml unchanged: the rollback stays
        assert set(await versions(dataplane, 20)) == {2}
        assert controller.rollback("m", "1")["rollback"] == {"to": "1", "reason": "manual"}
        assert set(await versions(dataplane, 20)) == {1}
        assert controller.rollbacks == {"m": 2}

    h.run(test)


def test_a_canary_breaching_its_guardrail_rolls_back_and_logs_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    h = Harness()
    canary = {"version": "3", "steps": [50], "step_s": 3600}
    canary["guardrails"] = {"max_error_rate": 0.1, "min_requests": 5}
    model(h, {"canary": canary})

    async def test(h: Harness) -> None:
        controller, dataplane, _ = serve(h)
        await h.manager.start()
        h.loaders.predictors[("m", 3)].fail_with = RuntimeError("broken")
        with caplog.at_level(logging.WARNING, "serval.routing"):
            for _ in range(200):
                try:
                    await dataplane.infer(echo_request("m"))
                except Exception:  # the canary fails, by design
                    continue
        state = controller.state("m")["canary"]
        assert state["state"] == "rolled_back"
        assert state["reason"].startswith("guardrail max_error_rate: error rate 1 over 5")
        assert set(await versions(dataplane, 20)) == {2}
        warnings = [r for r in caplog.records if "rolled back" in r.getMessage()]
        assert len(warnings) == 1
        assert controller.rollbacks == {"m": 1}

    h.run(test)


def test_an_evaluation_alert_rolls_back_a_canary_that_asks_for_it() -> None:
    h = Harness()
    canary = {"version": "3", "steps": [50], "step_s": 3600}
    canary["guardrails"] = {"rollback_on_alert": True}
    model(h, {"canary": canary})

    async def test(h: Harness) -> None:
        controller, dataplane, _ = serve(h)
        await h.manager.start()
        assert controller.rolls_back_on_alert("m") == frozenset({3})
        assert not controller.roll_back_on_alert("m", 2, "drift")  # not the canary
        assert controller.roll_back_on_alert("m", 3, "evaluation alert 7: drift x 0.4")
        state = controller.state("m")["canary"]
        assert state["state"] == "rolled_back"
        assert state["reason"] == "evaluation alert 7: drift x 0.4"
        assert set(await versions(dataplane, 20)) == {2}
        assert controller.rolls_back_on_alert("m") == frozenset()  # rolled back already
        assert controller.rollbacks == {"m": 1}

    h.run(test)


def test_a_canary_without_rollback_on_alert_stays() -> None:
    h = Harness()
    model(h, {"canary": {"version": "3", "steps": [50], "step_s": 3600}})

    async def test(h: Harness) -> None:
        controller, _, _ = serve(h)
        await h.manager.start()
        assert controller.rolls_back_on_alert("m") == frozenset()
        assert not controller.roll_back_on_alert("m", 3, "drift")
        assert controller.state("m")["canary"]["state"] == "ramping"

    h.run(test)


@pytest.mark.parametrize("algorithm", ["thompson", "epsilon_greedy", "ucb1"])
def test_a_bandit_sends_most_late_traffic_to_the_rewarded_version(algorithm: str) -> None:
    h = Harness()
    bandit = {"versions": ["1", "2"], "algorithm": algorithm, "epsilon": 0.05}
    model(h, {"bandit": bandit}, versions=2)

    async def test(h: Harness) -> None:
        controller, dataplane, _ = serve(h)
        await h.manager.start()
        for _ in range(300):  # each answer gets its reward on the bus, as the feedback API does
            (version,) = await versions(dataplane, 1)
            reward = 1.0 if version == 2 else 0.0
            feedback = Feedback("m", "id", ServableId("m", version), time.time(), reward=reward)
            h.bus.emit_feedback(feedback)
        late = await versions(dataplane, 200)
        assert late.count(2) > 0.8 * len(late)
        arms = controller.state("m")["bandit"]
        assert arms["2"]["mean_reward"] == 1.0
        assert arms["1"]["mean_reward"] == 0.0
        assert arms["1"]["pulls"] + arms["2"]["pulls"] == 500

    h.run(test)


def test_feedback_for_other_models_or_unmatched_ids_is_ignored() -> None:
    h = Harness()
    model(h, {"bandit": {"versions": ["1", "2"]}}, versions=2)

    async def test(h: Harness) -> None:
        controller, _, _ = serve(h)
        await h.manager.start()
        h.bus.emit_feedback(Feedback("m", "a", None, time.time(), reward=1.0))
        h.bus.emit_feedback(Feedback("x", "b", ServableId("x", 1), time.time(), reward=1.0))
        h.bus.emit_feedback(Feedback("m", "c", ServableId("m", 1), time.time(), ground_truth=1))
        bandit = controller.state("m")["bandit"]
        assert bandit == {
            "1": {"pulls": 0, "mean_reward": None},
            "2": {"pulls": 0, "mean_reward": None},
        }

    h.run(test)


def test_a_removed_version_hands_its_share_over_and_the_state_says_so() -> None:
    h = Harness()
    model(h, {"routes": {"1": 50, "3": 50}, "shadow": {"versions": ["2"]}})

    async def test(h: Harness) -> None:
        controller, dataplane, router = serve(h)
        await h.manager.start()
        h.source.remove_version("m", 3)
        await h.sync()
        assert set(await versions(dataplane, 20)) == {1}
        assert controller.state("m")["unavailable"]["versions"] == ["3"]
        choice = router.choose(echo_request("m"), h.manager.snapshot("m"))
        assert (choice.primary, choice.shadows) == (1, (2,))
        assert controller.state("m")["shadow"]["2"]["requests"] == 0

    h.run(test)


def test_records_of_shadow_copies_are_not_served_counts() -> None:
    h = Harness()
    model(h, {"routes": {"1": 1}}, versions=1)

    async def test(h: Harness) -> None:
        controller, dataplane, _ = serve(h)
        await h.manager.start()
        await versions(dataplane, 3)
        shadow = RequestRecord("", "", "m", 1)
        shadow.role, shadow.servable = "shadow", ServableId("m", 1)
        h.bus.emit_request(shadow)
        assert controller.state("m")["served"] == {"1": 3}

    h.run(test)
