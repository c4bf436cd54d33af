"""The traffic controller: each model's live traffic policy (docs/rollout.md).

The policy is what the model's ``model.yaml`` ``traffic`` section says, applied at each
reconcile without reloading a version (``LifecycleManager.on_configured``), or what the
traffic API set (``put``), which lasts until the model.yaml section changes or the server
restarts. The controller installs it in the ``Router``, counts the primary requests each
version answered (from the request records), feeds the canary's guardrails and the bandits'
arms (from the ``Feedback`` events), and rolls back on request or on a guardrail breach.
Everything runs on the event loop; a model without a policy costs a request nothing here.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from pydantic import ValidationError

from serval.core.errors import InvalidInputError, ModelNotFoundError, ModelNotReadyError
from serval.core.events import EventBus
from serval.core.feedback import Feedback
from serval.core.lifecycle.manager import LifecycleManager
from serval.core.model_spec import ModelSpec, describe_validation_error
from serval.core.records import RequestRecord
from serval.core.routing.bandit import Bandit
from serval.core.routing.bandit_store import BanditStore, BanditSync
from serval.core.routing.canary import CanaryRamp
from serval.core.routing.policy import LATEST, TrafficPolicy, parse_version
from serval.core.routing.router import Router
from serval.core.routing.shadow import ShadowBook
from serval.core.routing.shadowing import Pinned, ShadowCopies
from serval.core.routing.traffic_state import ModelTraffic, PolicySource, Rollback
from serval.core.routing.weighted import StickyKey, WeightedRoutes
from serval.core.specs.traffic import TrafficSpec

logger = logging.getLogger("serval.routing")

_UNSEEN = object()  # no model.yaml traffic section seen yet for a model


class TrafficController:
    def __init__(
        self,
        manager: LifecycleManager,
        router: Router,
        events: EventBus,
        shadows: ShadowBook,
        *,
        store: BanditStore | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._manager = manager
        self._router = router
        self._events = events
        self._shadows = shadows
        self._clock = clock
        self._models: dict[str, ModelTraffic] = {}
        self._file_specs: dict[str, object] = {}  # model -> model.yaml's traffic last applied
        self.rollbacks: dict[str, int] = {}  # rollbacks per model since the server started
        self._listening = False
        self._sync = BanditSync(store, self._bandits) if store is not None else None
        manager.on_configured(self._configured)
        events.on_feedback(self._on_feedback)

    # -- what sets the policy ---------------------------------------------------------------

    def _configured(self, model: str, spec: ModelSpec | None) -> None:
        """A reconcile accepted ``model``'s spec (None: the model left the repository)."""
        if spec is None:
            self._file_specs.pop(model, None)
            self._uninstall(model)
            return
        traffic = spec.traffic
        if self._file_specs.get(model, _UNSEEN) == traffic:
            return  # unchanged: an API policy set since stays
        self._file_specs[model] = traffic
        if traffic is None:
            self._uninstall(model)
            return
        policy, found = self._manager.version_folders(model)
        problem = traffic.unserved(policy, found, missing_ok=True)
        if problem is not None:  # model.yaml's were checked; a load request's override not
            logger.warning("model %s: traffic policy not applied: %s", model, problem)
            return
        self._install(model, traffic, "model.yaml")
        logger.info("model %s: traffic policy from model.yaml: %s", model, _text(traffic))

    def put(self, model: str, body: object) -> dict[str, Any]:
        """Replace ``model``'s live policy with ``body`` (the model.yaml ``traffic`` schema);
        returns the new state. 400 naming the field on a bad body, 404 for an unknown model."""
        policy, found = self._manager.version_folders(model)  # 404 first
        if not isinstance(body, Mapping):
            raise InvalidInputError("the body must be a JSON object: the traffic section")
        try:
            traffic = TrafficSpec.model_validate(body)
        except ValidationError as exc:
            raise InvalidInputError(_where_in_traffic(exc)) from exc
        problem = traffic.unserved(policy, found, missing_ok=False)
        if problem is not None:
            raise InvalidInputError(problem)
        self._install(model, traffic, "api")
        logger.info("model %s: traffic policy set through the API: %s", model, _text(traffic))
        return self.state(model)

    def rollback(self, model: str, to: object = None) -> dict[str, Any]:
        """All of ``model``'s traffic to version ``to``, else to the stable version, at once:
        state ``rolled_back``, reason ``manual``."""
        served = self._manager.served_versions(model)  # 404 first
        target = None if to is None else _served_version(to, served)
        state = self._models.get(model)
        if state is None:
            if target is None:
                raise InvalidInputError(
                    f"model {model!r} has no traffic policy to roll back; give 'to' to send "
                    f"all its traffic to one version"
                )
            state = ModelTraffic(model, None, "api", Pinned(target), set_at=self._clock())
            self._models[model] = state
            self._listen()
        if target is None:
            target = self._stable(state)
        if state.canary is not None:
            state.canary.roll_back("manual")
        state.rollback = Rollback(target, "manual")
        state.source = "api"
        state.policy = self._with_shadows(state.spec, Pinned(target))
        self._router.set_policy(model, state.policy)
        self.rollbacks[model] = self.rollbacks.get(model, 0) + 1
        logger.warning("model %s: traffic rolled back to version %d (manual)", model, target)
        return self.state(model)

    def _stable(self, state: ModelTraffic) -> int:
        """The version a rollback without ``to`` goes to: the canary's stable version; the
        heaviest route; the bandit arm with the best mean reward; else the latest."""
        available = self._manager.snapshot(state.model).versions
        candidates: list[int] = []
        spec = state.spec
        if state.canary is not None:
            stable = state.canary.stable(available)
            candidates = [] if stable is None else [stable]
        elif spec is not None and spec.routes is not None:
            weights = spec.route_weights
            candidates = sorted(
                (v for v in weights if v in available), key=lambda v: (-weights[v], v)
            )
        elif state.bandit is not None:
            arms = state.bandit.arms
            candidates = sorted(
                (v for v in arms if v in available),
                key=lambda v: (-(arms[v].mean_reward or 0.0), v),
            )
        if candidates:
            return candidates[0]
        if not available:
            raise ModelNotReadyError(
                f"model {state.model!r} has no available version to roll back to",
                retry_after_s=1.0,
            )
        return available[-1]

    def _install(self, model: str, traffic: TrafficSpec, source: PolicySource) -> None:
        sticky = StickyKey(traffic.sticky) if traffic.sticky is not None else None
        chooser: TrafficPolicy = LATEST
        canary = bandit = None
        if traffic.routes is not None:
            chooser = WeightedRoutes(traffic.route_weights, sticky)
        elif traffic.canary is not None:
            chooser = canary = CanaryRamp(traffic.canary, sticky, clock=self._clock)
        elif traffic.bandit is not None:
            chooser = bandit = Bandit(model, traffic.bandit)
        policy = self._with_shadows(traffic, chooser)
        self._models[model] = ModelTraffic(
            model, traffic, source, policy, canary, bandit, set_at=self._clock()
        )
        self._shadows.forget(model)
        self._router.set_policy(model, policy, sticky_header=sticky.header if sticky else None)
        self._listen()
        if bandit is not None and self._sync is not None:
            self._sync.start()

    @staticmethod
    def _with_shadows(traffic: TrafficSpec | None, chooser: TrafficPolicy) -> TrafficPolicy:
        shadow = traffic.shadow if traffic is not None else None
        if shadow is None or shadow.sample <= 0.0:
            return chooser
        return ShadowCopies(chooser, shadow.version_numbers, shadow.sample)

    def _uninstall(self, model: str) -> None:
        if self._models.pop(model, None) is not None:
            self._router.set_policy(model, None)
            self._shadows.forget(model)

    def _listen(self) -> None:
        """Subscribe to request records once the first policy exists: until then the plain
        request path does not call the controller at all."""
        if not self._listening:
            self._listening = True
            self._events.on_request(self._on_record)

    # -- what the policy learns -------------------------------------------------------------

    def _on_record(self, record: RequestRecord) -> None:
        models = self._models
        if not models:
            return
        state = models.get(record.model)
        servable = record.servable
        if state is None or servable is None or record.role != "primary":
            return
        version = servable.version
        served = state.served
        served[version] = served.get(version, 0) + 1
        if state.bandit is not None:
            state.bandit.pulled(version)
        canary = state.canary
        if canary is not None and version == canary.version and canary.state == "ramping":
            reason = canary.observe(record)
            if reason is not None:
                self._roll_back_canary(state, canary, reason)

    def rolls_back_on_alert(self, model: str) -> frozenset[int]:
        """The versions of ``model`` an evaluation alert rolls back: its canary, while it
        ramps, when its guardrails say ``rollback_on_alert``."""
        state = self._models.get(model)
        canary = state.canary if state is not None else None
        if canary is None or canary.state != "ramping":
            return frozenset()
        if not canary.spec.guardrails.rollback_on_alert:
            return frozenset()
        return frozenset({canary.version})

    def roll_back_on_alert(self, model: str, version: int, reason: str) -> bool:
        """Roll ``model``'s canary back because evaluation raised an alert on it (``reason``
        names the alert), as a breached guardrail would; False when ``version`` is not a
        ramping canary that rolls back on alerts (any more)."""
        if version not in self.rolls_back_on_alert(model):
            return False
        state = self._models[model]
        assert state.canary is not None
        self._roll_back_canary(state, state.canary, reason)
        return True

    def _roll_back_canary(self, state: ModelTraffic, canary: CanaryRamp, reason: str) -> None:
        canary.roll_back(reason)  # done already when a guardrail breached: the same again
        state.rollback = Rollback(None, reason)
        self.rollbacks[state.model] = self.rollbacks.get(state.model, 0) + 1
        logger.warning(
            "model %s: canary version %d rolled back: %s; all traffic goes to the stable version",
            state.model,
            canary.version,
            reason,
        )

    def _on_feedback(self, feedback: Feedback) -> None:
        servable = feedback.servable
        if servable is None or feedback.reward is None:
            return
        state = self._models.get(servable.name)
        if state is not None and state.bandit is not None:
            state.bandit.rewarded(servable.version, feedback.reward)

    def _bandits(self) -> Iterator[Bandit]:
        return (s.bandit for s in self._models.values() if s.bandit is not None)

    # -- what it says ----------------------------------------------------------------------

    def state(self, model: str) -> dict[str, Any]:
        """``GET /v2/models/{m}/traffic``: the live policy and its state."""
        self._manager.served_versions(model)  # 404 for an unknown model
        state = self._models.get(model)
        try:
            available = self._manager.snapshot(model).versions
        except ModelNotFoundError:  # unloaded: nothing serves
            available = ()
        if state is None:
            return {"policy": None, "source": None, "served": {}}
        return state.as_json(available, self._shadows.statistics(model))

    def models(self) -> list[ModelTraffic]:
        """Every model with a live policy (the metrics read them)."""
        return list(self._models.values())

    async def close(self) -> None:
        """Send the bandits' last counts to the store and close it."""
        if self._sync is not None:
            await self._sync.stop()


def _served_version(to: object, served: set[int]) -> int:
    """A rollback's ``to``: a version the model serves."""
    try:
        version = parse_version(to if isinstance(to, str | int) else repr(to))
    except InvalidInputError as exc:
        raise InvalidInputError(f"to: {exc.message}") from exc
    if version is None or version not in served:
        serves = ", ".join(str(v) for v in sorted(served)) or "no version"
        raise InvalidInputError(f"to: version {to} is not served (version_policy serves {serves})")
    return version


def _text(traffic: TrafficSpec) -> str:
    return json.dumps(traffic.as_json(), separators=(",", ":"))


def _where_in_traffic(exc: ValidationError) -> str:
    """The errors of a body as those of model.yaml's section: ``traffic.<field>: reason``."""
    parts = describe_validation_error(exc, TrafficSpec).split("; ")
    return "; ".join(
        f"traffic: {part.removeprefix('(top level): ')}"
        if part.startswith("(top level): ")
        else f"traffic.{part}"
        for part in parts
    )
