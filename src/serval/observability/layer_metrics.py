"""Metrics of the cache, features and precomputed layers, read from their ``LayerCounters`` at
each scrape (the layers count on the event loop; so does the scrape).

- ``serval_cache_requests_total{model, version, result}``: hit, miss, skipped, unavailable,
  write_failed (Triton's statistics report hits and misses too, as ``cache_hit`` and
  ``cache_miss``).
- ``serval_feature_rows_total{model, result}``: found, defaulted, unknown;
  ``serval_feature_lookups_total{model}`` (one Redis round trip each) and
  ``serval_feature_lookups_unavailable_total{model}``.
- ``serval_precomputed_rows_total{model, source}``: precomputed, model, missing, stale;
  ``serval_precomputed_lookups_unavailable_total{model}``.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.metrics_core import Metric
from prometheus_client.registry import CollectorRegistry

from serval.core.composition.layer_counters import LayerCounters
from serval.observability.instruments import counter_family

_UNAVAILABLE = "unavailable"
_LOOKUPS = "lookups"  # features: lookups made (one round trip each), not rows


class LayerMetrics:
    """The collector; registers itself on ``registry``."""

    def __init__(self, registry: CollectorRegistry, counters: LayerCounters) -> None:
        self._counters = counters
        registry.register(self)

    def collect(self) -> Iterator[Metric]:
        counts = self._counters.snapshot()
        yield counter_family(
            "serval_cache_requests_total",
            "Requests to models with a prediction cache, by result: hit, miss, skipped "
            "(cache: false), unavailable (the store did not answer: a miss), write_failed.",
            ("model", "version", "result"),
            (
                ((model, version, outcome), float(count))
                for (family, model, version, outcome), count in counts.items()
                if family == "cache"
            ),
        )
        for family, rows, rows_help, label in (
            (
                "features",
                "serval_feature_rows_total",
                "Rows whose features were looked up, by result: found, defaulted (filled with "
                "defaults), unknown (refused).",
                "result",
            ),
            (
                "precomputed",
                "serval_precomputed_rows_total",
                "Rows of requests to models with precomputed answers, by source: precomputed, "
                "model (fallback), missing (refused), stale (older than max_age_s).",
                "source",
            ),
        ):
            yield counter_family(
                rows,
                rows_help,
                ("model", label),
                (
                    ((model, outcome), float(count))
                    for (kind, model, _, outcome), count in counts.items()
                    if kind == family and outcome not in (_UNAVAILABLE, _LOOKUPS)
                ),
            )
            if family == "features":
                yield counter_family(
                    "serval_feature_lookups_total",
                    "Feature lookups made: one Redis round trip each, whatever the rows.",
                    ("model",),
                    (
                        ((model,), float(count))
                        for (kind, model, _, outcome), count in counts.items()
                        if kind == family and outcome == _LOOKUPS
                    ),
                )
            yield counter_family(
                f"serval_{'feature' if family == 'features' else family}_lookups_unavailable_total",
                f"Lookups of the {family} layer the store did not answer (Redis down or slow).",
                ("model",),
                (
                    ((model,), float(count))
                    for (kind, model, _, outcome), count in counts.items()
                    if kind == family and outcome == _UNAVAILABLE
                ),
            )
