"""Loop-confined metric accumulators, turned into Prometheus metric families when scraped.

prometheus_client's ``Counter`` and ``Histogram`` take a lock and walk the buckets in Python on
every update (0.4 to 0.9 µs each with a cached child, 1.3 µs with a ``labels()`` lookup). A
request updates about ten series, which would cost about 3% of an overhead-bound model's
throughput on its own. serval updates request metrics only on the event loop's thread, so an
int and a ``bisect`` are enough (about 0.1 µs); a collector (``metrics.py``) builds the metric
families from them at scrape time, also on the loop.

Never update these from another thread.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from functools import cache
from typing import Any, TypeVar

import numpy as np
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.utils import floatToGoString

Labels = tuple[str, ...]
_Family = TypeVar("_Family", GaugeMetricFamily, CounterMetricFamily)

# Seconds: 100 µs to 10 s, for request, queue and compute times.
LATENCY_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
BATCH_SIZE_BUCKETS = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0)


class _LabelledValues:
    """A value per label tuple; the subclasses say how it changes and how it is exposed."""

    __slots__ = ("documentation", "label_names", "name", "values")

    def __init__(self, name: str, documentation: str, label_names: Sequence[str]) -> None:
        self.name = name
        self.documentation = documentation
        self.label_names = tuple(label_names)
        self.values: dict[Labels, float] = {}

    def inc(self, labels: Labels, amount: float = 1.0) -> None:
        values = self.values
        values[labels] = values.get(labels, 0.0) + amount

    def get(self, labels: Labels) -> float:
        return self.values.get(labels, 0.0)


class CounterVec(_LabelledValues):
    """A counter per label tuple."""

    __slots__ = ()

    def family(self) -> CounterMetricFamily:
        return counter_family(self.name, self.documentation, self.label_names, self.values.items())


class GaugeVec(_LabelledValues):
    """A gauge per label tuple, set by its owner."""

    __slots__ = ()

    def set(self, labels: Labels, value: float) -> None:
        self.values[labels] = value

    def family(self) -> GaugeMetricFamily:
        return gauge_family(self.name, self.documentation, self.label_names, self.values.items())


def gauge_family(
    name: str,
    documentation: str,
    label_names: Sequence[str],
    samples: Iterable[tuple[Labels, float]],
) -> GaugeMetricFamily:
    return _filled(GaugeMetricFamily(name, documentation, labels=label_names), samples)


def _filled(family: _Family, samples: Iterable[tuple[Labels, float]]) -> _Family:
    for labels, value in samples:
        family.add_metric(labels, value)
    return family


class Histogram:
    """One histogram series; ``bounds`` are the finite upper bounds, ascending."""

    __slots__ = ("_edges", "bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self._edges = np.asarray(bounds, dtype=np.float64)
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.total = 0.0

    def observe(self, value: float) -> None:
        # Prometheus buckets count values <= their bound: bisect_left finds the first such one.
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    def observe_many(self, values: np.ndarray[Any, Any]) -> None:
        """Observe every value of a 1-D array, vectorised."""
        if values.size == 0:
            return
        buckets = np.searchsorted(self._edges, values, side="left")  # as bisect_left
        added = np.bincount(buckets, minlength=len(self.counts)).tolist()
        self.counts = [have + new for have, new in zip(self.counts, added, strict=True)]
        self.total += float(values.sum())

    @property
    def count(self) -> int:
        return sum(self.counts)


def histogram_family(
    name: str,
    documentation: str,
    label_names: Sequence[str],
    series: Iterable[tuple[Labels, Histogram]],
) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, documentation, labels=label_names)
    for labels, histogram in series:
        cumulative = 0
        buckets = []
        for bound, count in zip((*histogram.bounds, math.inf), histogram.counts, strict=True):
            cumulative += count
            buckets.append((_le(bound), float(cumulative)))
        family.add_metric(labels, buckets, histogram.total)
    return family


@cache
def _le(bound: float) -> str:
    return floatToGoString(bound)  # type: ignore[no-any-return, no-untyped-call]


def counter_family(
    name: str,
    documentation: str,
    label_names: Sequence[str],
    samples: Iterable[tuple[Labels, float]],
) -> CounterMetricFamily:
    return _filled(CounterMetricFamily(name, documentation, labels=label_names), samples)
