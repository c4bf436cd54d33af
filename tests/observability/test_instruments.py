"""The loop-confined histogram: one value at a time and vectorised agree, and the exposition
has cumulative buckets, _count and _sum."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from serval.observability.instruments import LATENCY_BUCKETS, Histogram, histogram_family


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(0, 20, allow_nan=False) | st.sampled_from(LATENCY_BUCKETS)))
def test_observe_and_observe_many_agree(values: list[float]) -> None:
    one, many = Histogram(LATENCY_BUCKETS), Histogram(LATENCY_BUCKETS)
    for value in values:
        one.observe(value)
    many.observe_many(np.array(values, dtype=np.float64))
    assert one.counts == many.counts
    assert one.count == len(values)
    assert many.total == sum(values) or abs(many.total - sum(values)) < 1e-9


def test_family_is_cumulative_with_inclusive_bounds() -> None:
    histogram = Histogram((1.0, 2.0))
    for value in (0.5, 1.0, 1.5, 3.0):
        histogram.observe(value)

    class Collector:
        def collect(self):  # type: ignore[no-untyped-def]
            yield histogram_family("t_seconds", "test", ("a",), [(("x",), histogram)])

    registry = CollectorRegistry()
    registry.register(Collector())
    (family,) = text_string_to_metric_families(generate_latest(registry).decode())
    samples = {(s.name, s.labels.get("le")): s.value for s in family.samples}
    assert samples[("t_seconds_bucket", "1.0")] == 2  # 0.5 and 1.0: le is inclusive
    assert samples[("t_seconds_bucket", "2.0")] == 3
    assert samples[("t_seconds_bucket", "+Inf")] == 4
    assert samples[("t_seconds_count", None)] == 4
    assert samples[("t_seconds_sum", None)] == 6.0
