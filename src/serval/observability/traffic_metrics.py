"""Metrics of traffic policies (docs/metrics.md#traffic-policies), read from the traffic
controller at scrape time: nothing per request."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric

from serval.core.routing.canary import CanaryState
from serval.core.routing.traffic_state import ModelTraffic
from serval.observability.instruments import counter_family, gauge_family

CANARY_STATES: tuple[CanaryState, ...] = ("ramping", "promoted", "rolled_back")


class TrafficMetrics:
    """A collector on ``registry``: canary percent and state, rollbacks, bandit pulls and mean
    reward, from ``models()`` (each model's live policy) and ``rollbacks`` (per model)."""

    def __init__(
        self,
        registry: CollectorRegistry,
        models: Callable[[], list[ModelTraffic]],
        rollbacks: Mapping[str, int],
    ) -> None:
        self._models = models
        self._rollbacks = rollbacks
        registry.register(self)

    def collect(self) -> Iterator[Metric]:
        models = self._models()
        canaries = [(m.model, m.canary) for m in models if m.canary is not None]
        yield gauge_family(
            "serval_traffic_canary_percent",
            "Percent of the model's traffic its canary version gets now.",
            ("model", "version"),
            (((name, str(c.version)), c.percent()) for name, c in canaries),
        )
        yield gauge_family(
            "serval_traffic_canary_state",
            "1 for the state the canary is in (ramping, promoted, rolled_back), 0 for others.",
            ("model", "version", "state"),
            (
                ((name, str(c.version), state), 1.0 if c.state == state else 0.0)
                for name, c in canaries
                for state in CANARY_STATES
            ),
        )
        yield counter_family(
            "serval_traffic_rollbacks",
            "Rollbacks of the model's traffic: guardrail breaches and manual ones.",
            ("model",),
            (((name,), float(n)) for name, n in self._rollbacks.items()),
        )
        bandits = [(m.model, m.bandit) for m in models if m.bandit is not None]
        yield counter_family(
            "serval_traffic_bandit_pulls",
            "Requests each bandit arm (version) answered, across replicas with --redis-url.",
            ("model", "version"),
            (
                ((name, str(v)), float(arm.pulls))
                for name, b in bandits
                for v, arm in b.arms.items()
            ),
        )
        yield gauge_family(
            "serval_traffic_bandit_mean_reward",
            "Mean reward each bandit arm (version) received through the feedback API.",
            ("model", "version"),
            (
                ((name, str(v)), arm.mean_reward)
                for name, b in bandits
                for v, arm in b.arms.items()
                if arm.mean_reward is not None
            ),
        )
