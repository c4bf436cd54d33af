"""The metrics of the cache, features and precomputed layers come from their counters."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from serval.core.composition.layer_counters import LayerCounters
from serval.observability.layer_metrics import LayerMetrics


def test_each_family_reports_its_counts_under_its_labels() -> None:
    counters = LayerCounters()
    registry = CollectorRegistry()
    LayerMetrics(registry, counters)
    counters.add("cache", "m", "1", "hit", 3)
    counters.add("cache", "m", "1", "miss")
    counters.add("features", "f", "", "found", 8)
    counters.add("features", "f", "", "lookups", 2)
    counters.add("features", "f", "", "unavailable")
    counters.add("precomputed", "p", "", "precomputed", 5)
    counters.add("precomputed", "p", "", "unavailable", 2)
    text = generate_latest(registry).decode()
    assert 'serval_cache_requests_total{model="m",result="hit",version="1"} 3.0' in text
    assert 'serval_cache_requests_total{model="m",result="miss",version="1"} 1.0' in text
    assert 'serval_feature_rows_total{model="f",result="found"} 8.0' in text
    assert 'serval_feature_lookups_total{model="f"} 2.0' in text
    assert 'serval_feature_lookups_unavailable_total{model="f"} 1.0' in text
    assert 'serval_precomputed_rows_total{model="p",source="precomputed"} 5.0' in text
    assert 'serval_precomputed_lookups_unavailable_total{model="p"} 2.0' in text
    # Lookups and outages are not rows.
    assert 'result="lookups"' not in text and 'result="unavailable"' not in text
    assert 'source="unavailable"' not in text
