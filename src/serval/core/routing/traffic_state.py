"""The live traffic policy of one model and what it has done: the state ``GET
/v2/models/{m}/traffic`` reports and the metrics read."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal

from serval.core.routing.bandit import Bandit
from serval.core.routing.canary import CanaryRamp
from serval.core.routing.policy import TrafficPolicy
from serval.core.routing.shadow import ShadowStatistics
from serval.core.specs.traffic import TrafficSpec

PolicySource = Literal["model.yaml", "api"]


@dataclass(slots=True)
class Rollback:
    """Where a rollback sent all traffic, and why (``manual``, or the guardrail breached)."""

    to: int | None  # None: the canary's stable version, whichever is available
    reason: str


@dataclass(slots=True, eq=False)
class ModelTraffic:
    """One model's live policy: the spec (None: only a rollback pins the model), where it came
    from, the policy installed in the router, and the state of its parts."""

    model: str
    spec: TrafficSpec | None
    source: PolicySource
    policy: TrafficPolicy
    canary: CanaryRamp | None = None
    bandit: Bandit | None = None
    rollback: Rollback | None = None
    set_at: float = field(default_factory=time.time)
    # Primary requests answered per version since the policy was set.
    served: dict[int, int] = field(default_factory=dict)

    def named_versions(self) -> set[int]:
        return {v for _, v in self.spec.named_versions()} if self.spec is not None else set()

    def as_json(
        self, available: tuple[int, ...], shadows: dict[int, ShadowStatistics]
    ) -> dict[str, Any]:
        """The traffic API's answer. ``available``: the model's versions that serve now."""
        spec = self.spec
        doc: dict[str, Any] = {
            "policy": spec.as_json() if spec is not None else None,
            "source": self.source,
            "set_at": self.set_at,
            "served": {str(v): n for v, n in sorted(self.served.items())},
        }
        missing = sorted(self.named_versions() - set(available))
        if missing:
            doc["unavailable"] = {
                "versions": [str(v) for v in missing],
                "note": "not available now: their share goes to the other versions",
            }
        if self.canary is not None:
            canary = self.canary
            stable = canary.stable(available)
            doc["canary"] = {
                "version": str(canary.version),
                "stable": None if stable is None else str(stable),
                "percent": canary.percent(),
                "state": canary.state,
                "reason": canary.reason,
            }
        if spec is not None and spec.shadow is not None:
            doc["shadow"] = {
                str(v): (shadows[v].as_dict() if v in shadows else ShadowStatistics().as_dict())
                for v in spec.shadow.version_numbers
            }
        if self.bandit is not None:
            doc["bandit"] = {
                str(v): {"pulls": arm.pulls, "mean_reward": arm.mean_reward}
                for v, arm in sorted(self.bandit.arms.items())
            }
        if self.rollback is not None:
            to = self.rollback.to
            if to is None and self.canary is not None:
                to = self.canary.stable(available)
            doc["rollback"] = {
                "to": None if to is None else str(to),
                "reason": self.rollback.reason,
            }
        return doc
