"""Running statistics of monitored tensors against numpy references (hypothesis), class counts
and their cap, and which tensors a spec monitors."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from serval.core.model_spec import ModelSpec
from serval.core.tensors.datatypes import DataType
from serval.core.types import Tensor
from serval.observability.tensor_stats import OTHER_CLASS, ServableMonitor, TensorStats

FLOATS = hnp.arrays(
    np.float64,
    hnp.array_shapes(min_dims=1, max_dims=3, max_side=6),
    elements=st.floats(-1e6, 1e6) | st.just(math.nan),
)


@settings(max_examples=200, deadline=None)
@given(
    batches=st.lists(FLOATS, min_size=1, max_size=4), low=st.floats(-1e3, 0), span=st.floats(0, 2e3)
)
def test_numbers_match_numpy(batches: list[np.ndarray], low: float, span: float) -> None:
    stats = TensorStats(bounds=(low, low + span))
    for batch in batches:
        stats.update(batch)
    values = np.concatenate([b.reshape(-1) for b in batches])
    present = values[~np.isnan(values)]
    assert stats.missing == int(np.isnan(values).sum())
    assert stats.count == present.size
    assert stats.below == int((present < low).sum())
    assert stats.above == int((present > low + span).sum())
    if present.size:
        assert stats.minimum == present.min()
        assert stats.maximum == present.max()
        assert stats.mean == pytest.approx(present.mean(), rel=1e-9, abs=1e-6)
    else:
        assert math.isnan(stats.minimum) and math.isnan(stats.maximum) and math.isnan(stats.mean)


@settings(max_examples=100, deadline=None)
@given(
    hnp.arrays(np.int64, hnp.array_shapes(max_dims=2, max_side=20), elements=st.integers(-5, 300))
)
def test_integer_classes_match_numpy(labels: np.ndarray) -> None:
    stats = TensorStats(track_numbers=False, track_classes=True)
    stats.update(labels)
    values, counts = np.unique(labels, return_counts=True)
    assert stats.classes == {str(v): int(c) for v, c in zip(values, counts, strict=True)}


def test_classes_are_capped_and_the_rest_count_as_other() -> None:
    stats = TensorStats(track_numbers=False, track_classes=True, max_classes=3)
    stats.update(np.array([5, 6, 7, 8, 9, 5]))
    stats.update(np.array([[9], [5]]))
    assert stats.classes == {"5": 3, "6": 1, "7": 1, OTHER_CLASS: 3}
    assert sum(stats.classes.values()) == 8


def test_string_and_float_classes() -> None:
    words = TensorStats(track_numbers=False, track_classes=True)
    words.update(np.array([b"cat", b"dog", b"cat"], dtype=object))
    assert words.classes == {"cat": 2, "dog": 1}
    floats = TensorStats(track_numbers=False, track_classes=True)
    floats.update(np.array([1.0, 2.0, math.nan, 2.0], dtype=np.float32))
    assert floats.classes == {"1": 1, "2": 2}
    assert floats.missing == 1


def test_infinities_and_booleans() -> None:
    stats = TensorStats(bounds=(0.0, 1.0))
    stats.update(np.array([math.inf, -math.inf, 0.5]))
    assert (stats.count, stats.below, stats.above) == (3, 1, 1)
    assert stats.mean == 0.5 / 3  # the mean of the finite values over every present value
    flags = TensorStats()
    flags.update(np.array([True, False, True]))
    assert (flags.count, flags.minimum, flags.maximum) == (3, 0.0, 1.0)


def test_bytes_tensors_only_feed_classes() -> None:
    stats = TensorStats(bounds=(0.0, 1.0))
    stats.update(np.array([b"x"], dtype=object))
    assert stats.count == 0 and stats.classes == {}


def test_monitor_follows_the_spec() -> None:
    assert ServableMonitor.from_spec(ModelSpec()) is None
    spec = ModelSpec.parse(
        {
            "inputs": [{"name": "x", "range": [0, 1]}, {"name": "ignored", "datatype": "FP32"}],
            "outputs": [{"name": "label", "classes": True}],
        },
        source="test",
    )
    monitor = ServableMonitor.from_spec(spec)
    assert monitor is not None
    assert set(monitor.inputs) == {"x"} and set(monitor.outputs) == {"label"}
    assert monitor.outputs["label"].track_numbers is False
    monitor.observe_inputs([Tensor.from_numpy("x", np.array([0.5, 2.0]))])
    monitor.observe_outputs([Tensor("label", DataType.INT64, np.array([1, 1]))])
    assert (monitor.inputs["x"].count, monitor.inputs["x"].above) == (2, 1)
    assert monitor.outputs["label"].classes == {"1": 2}


def test_spec_rejects_a_reversed_range() -> None:
    with pytest.raises(Exception, match="min <= max"):
        ModelSpec.parse({"inputs": [{"name": "x", "range": [2, 1]}]}, source="test")
