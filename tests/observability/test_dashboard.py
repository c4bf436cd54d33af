"""The Grafana dashboard and docs/metrics.md name only metrics serval exports, and every
serval metric is documented."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import CollectorRegistry

from serval.core.composition.cascade import CascadeCounts
from serval.core.composition.layer_counters import LayerCounters
from serval.core.events import StateChanged
from serval.core.lifecycle.states import ServableId, ServableState
from serval.core.model_spec import ModelSpec
from serval.core.routing.bandit import Bandit
from serval.core.routing.canary import CanaryRamp
from serval.core.routing.traffic_state import ModelTraffic
from serval.core.specs.traffic import BanditSpec, CanarySpec
from serval.evaluation.prometheus_metrics import EvaluationMetrics
from serval.evaluation.recording.prediction_log import LogCounts
from serval.observability.composite_metrics import CompositeMetrics
from serval.observability.layer_metrics import LayerMetrics
from serval.observability.metrics import ServalMetrics
from serval.observability.traffic_metrics import TrafficMetrics

ROOT = Path(__file__).resolve().parents[2]
NAME = re.compile(r"\bserval_[a-z_]+")


def families() -> dict[str, str]:
    """Every serval metric family as written in the exposition: name -> type."""
    registry = CollectorRegistry()
    metrics = ServalMetrics(registry, pool_queue_depth=lambda: 0, process=False)
    CompositeMetrics(registry, CascadeCounts())
    LayerMetrics(registry, LayerCounters())
    spec = ModelSpec.parse(
        {"inputs": [{"name": "x", "monitor": True}], "outputs": [{"name": "y", "classes": True}]},
        source="test",
    )
    metrics.on_state_changed(StateChanged(ServableId("m", 1), ServableState.AVAILABLE, spec=spec))
    canary = CanaryRamp(CanarySpec(version="2"))
    bandit = Bandit("b", BanditSpec(versions=("1", "2")))
    bandit.rewarded(1, 1.0)
    policies = [
        ModelTraffic("c", None, "api", canary, canary=canary),
        ModelTraffic("b", None, "api", bandit, bandit=bandit),
    ]
    TrafficMetrics(registry, lambda: policies, {"c": 1})
    EvaluationMetrics(
        registry,
        evaluations={},
        log_counts=lambda: LogCounts({}, {}, {}),
        queued=lambda: 0,
        joined={},
        alerts={},
    )
    return {
        family.name + ("_total" if family.type == "counter" else ""): family.type
        for family in registry.collect()
    }


def sample_names() -> set[str]:
    names = set()
    for name, kind in families().items():
        names.add(name)
        if kind == "histogram":
            names.update(f"{name}{suffix}" for suffix in ("_bucket", "_sum", "_count"))
    return names


def test_dashboard_queries_exported_metrics() -> None:
    dashboard = json.loads((ROOT / "deploy/grafana/serval-dashboard.json").read_text())
    expressions = [
        target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])
    ]
    used = {name for expr in expressions for name in NAME.findall(expr)}
    assert used, "the dashboard queries no serval metric"
    assert used <= sample_names(), used - sample_names()


def test_metrics_reference_documents_every_metric() -> None:
    text = (ROOT / "docs/metrics.md").read_text()
    documented = {name for name in NAME.findall(text) if not name.endswith("_")}
    # serval_output_* is documented as a group: the same metrics as serval_input_*.
    expected = {name.replace("serval_output_", "serval_input_") for name in families()}
    assert expected <= documented, expected - documented
    assert documented <= sample_names(), documented - sample_names()
