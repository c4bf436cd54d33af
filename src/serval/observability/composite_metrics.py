"""Metrics of composite models: the rows each stage of a cascade answered.

The cascades count into a ``CascadeCounts`` (plain ints, on the event loop); this collector,
registered on the injected registry, turns them into a counter family at scrape time.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric

from serval.core.composition.cascade import CascadeCounts
from serval.observability.instruments import counter_family


class CompositeMetrics:
    """``serval_cascade_rows_total{model, stage}``: rows of requests to cascade ``model``
    answered by its stage ``stage`` (the stage's model name)."""

    def __init__(self, registry: CollectorRegistry, counts: CascadeCounts) -> None:
        self._counts = counts
        registry.register(self)

    def collect(self) -> Iterator[Metric]:
        yield counter_family(
            "serval_cascade_rows_total",
            "Rows of requests to a cascade answered by each of its stages (stage: the "
            "stage's model).",
            ("model", "stage"),
            ((key, float(rows)) for key, rows in list(self._counts.rows.items())),
        )
