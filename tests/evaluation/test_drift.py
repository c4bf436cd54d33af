"""Drift scores: no firing on noise at small and large windows, a shifted feature and an
unseen category drift, missing values counted, and the bounds of every method (hypothesis)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy.spatial.distance import jensenshannon
from scipy.stats import ks_2samp, wasserstein_distance

from serval.core.specs.monitoring import DEFAULT_DRIFT_THRESHOLDS, DriftMethod
from serval.evaluation.analysis.drift import Baseline, baselines, drift, feature_drift
from serval.evaluation.analysis.histograms import binned_shares, decile_edges, psi
from serval.evaluation.analysis.reference import Column

METHODS: list[DriftMethod] = ["psi", "jensenshannon", "wasserstein", "ks"]


def _numeric(values: np.ndarray) -> Baseline:
    return Baseline(Column("f", "numeric", values.astype(np.float64)))


def _categorical(values: list[str]) -> Baseline:
    return Baseline(Column("c", "categorical", np.array(values, dtype=object)))


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("window", [1_000, 100_000])
def test_the_same_distribution_does_not_drift(method: DriftMethod, window: int) -> None:
    rng = np.random.default_rng(7)
    baseline = _numeric(rng.normal(5.0, 2.0, 50_000))
    threshold = DEFAULT_DRIFT_THRESHOLDS[method]
    for _ in range(5):  # several windows of noise: none fires
        result = feature_drift(baseline, rng.normal(5.0, 2.0, window), method, threshold)
        assert result.score is not None
        assert result.score < threshold / 2, (method, window, result.score)
        assert not result.drifted


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("window", [1_000, 100_000])
def test_a_mean_shifted_by_one_deviation_drifts(method: DriftMethod, window: int) -> None:
    rng = np.random.default_rng(8)
    baseline = _numeric(rng.normal(5.0, 2.0, 50_000))
    threshold = DEFAULT_DRIFT_THRESHOLDS[method]
    result = feature_drift(baseline, rng.normal(7.0, 2.0, window), method, threshold)
    assert result.score is not None
    assert result.score > threshold
    assert result.drifted


@pytest.mark.parametrize("method", METHODS)
def test_an_unseen_category_drifts_and_the_same_shares_do_not(method: DriftMethod) -> None:
    rng = np.random.default_rng(9)
    categories = ["red", "green", "blue"]
    baseline = _categorical(list(rng.choice(categories, 20_000, p=[0.5, 0.3, 0.2])))
    threshold = DEFAULT_DRIFT_THRESHOLDS[method]
    same = rng.choice(categories, 1_000, p=[0.5, 0.3, 0.2]).astype(object)
    assert not feature_drift(baseline, same, method, threshold).drifted
    unseen = rng.choice([*categories, "purple"], 1_000, p=[0.35, 0.2, 0.15, 0.3]).astype(object)
    result = feature_drift(baseline, unseen, method, threshold)
    assert result.drifted
    assert result.score is not None
    shares = np.array([0.2, 0.3, 0.5, 0.0])  # blue, green, red, unseen
    counts = np.array([(unseen == c).sum() for c in ["blue", "green", "red"]])
    now = np.append(counts, len(unseen) - counts.sum()) / len(unseen)
    if method == "psi":  # PSI over categories; the others: Jensen-Shannon (no order to use)
        expected = psi(baseline.shares, now)
    else:
        expected = float(jensenshannon(baseline.shares, now, base=2))
    assert result.score == pytest.approx(expected)
    np.testing.assert_allclose(baseline.shares, shares, atol=0.02)


def test_scores_match_scipy_on_numbers() -> None:
    rng = np.random.default_rng(10)
    reference, current = rng.exponential(2.0, 5_000), rng.exponential(2.5, 800)
    baseline = _numeric(reference)
    assert baseline.score(current, "ks") == pytest.approx(ks_2samp(reference, current).statistic)
    assert baseline.score(current, "wasserstein") == pytest.approx(
        wasserstein_distance(reference, current) / np.std(reference)
    )
    edges = np.unique(np.quantile(reference, np.linspace(0.1, 0.9, 9), method="inverted_cdf"))
    bounds = np.concatenate([[-np.inf], edges, [np.inf]])

    def shares(x: np.ndarray) -> np.ndarray:  # right-closed bins (lo, hi]
        return np.array([((x > lo) & (x <= hi)).sum() for lo, hi in itertools.pairwise(bounds)])

    ref_shares, cur_shares = shares(reference), shares(current)
    assert baseline.score(current, "jensenshannon") == pytest.approx(
        jensenshannon(ref_shares / ref_shares.sum(), cur_shares / cur_shares.sum(), base=2)
    )


def test_discrete_values_get_a_bin_each_and_open_outer_bins() -> None:
    reference = np.array([0.0] * 70 + [1.0] * 30)
    edges = decile_edges(reference)
    assert edges.tolist() == [0.0, 1.0]
    assert binned_shares(np.array([-5.0, 0.0, 0.5, 1.0, 9.0]), edges).tolist() == [
        0.4,
        0.4,
        0.2,
    ]
    baseline = _numeric(reference)
    assert baseline.score(reference, "psi") == 0.0
    # 2 is beyond every reference value: it lands in the open upper bin and scores.
    assert baseline.score(np.array([2.0] * 100), "psi") > 1.0


def test_a_constant_reference_scales_wasserstein_by_its_magnitude() -> None:
    assert _numeric(np.full(100, 4.0)).score(np.full(10, 5.0), "wasserstein") == pytest.approx(0.25)
    assert _numeric(np.zeros(100)).score(np.full(10, 0.5), "wasserstein") == pytest.approx(0.5)
    assert _numeric(np.zeros(100)).score(np.zeros(10), "wasserstein") == 0.0


def test_missing_values_are_counted_not_compared() -> None:
    baseline = _numeric(np.arange(100.0))
    result = feature_drift(baseline, np.array([1.0, np.nan, 50.0, np.nan]), "ks", 0.1)
    assert (result.rows, result.missing) == (2, 2)
    empty = feature_drift(baseline, np.array([np.nan]), "psi", 0.2)
    assert empty == type(empty)(None, False, 0, 1)
    categories = _categorical(["a", "b"])
    assert feature_drift(categories, np.array(["a", None], dtype=object), "psi", 0.2).missing == 1


def test_drift_scores_every_subject_of_the_reference() -> None:
    subjects = {
        "f": Column("f", "numeric", np.arange(1_000.0)),
        "prediction": Column("prediction", "categorical", np.array(["0", "1"] * 50, object)),
    }
    current = {"f": np.arange(1_000.0) + 500.0}
    result = drift(baselines(subjects), current, "psi", 0.2)
    assert result["f"].drifted
    assert result["prediction"].score is None  # no current values: not scored


FINITE = st.floats(-1e6, 1e6, allow_nan=False)
SAMPLES = hnp.arrays(np.float64, st.integers(1, 200), elements=FINITE)


@settings(max_examples=150, deadline=None)
@given(reference=SAMPLES, current=SAMPLES)
def test_bounds_of_every_method(reference: np.ndarray, current: np.ndarray) -> None:
    baseline = _numeric(reference)
    assert 0.0 <= baseline.score(current, "jensenshannon") <= 1.0
    assert 0.0 <= baseline.score(current, "ks") <= 1.0
    assert baseline.score(current, "psi") >= 0.0
    wasserstein = baseline.score(current, "wasserstein")
    assert wasserstein >= 0.0
    assert math.isfinite(wasserstein)


@settings(max_examples=150, deadline=None)
@given(sample=SAMPLES)
def test_identical_samples_score_about_zero(sample: np.ndarray) -> None:
    baseline = _numeric(sample)
    for method in METHODS:
        assert baseline.score(sample, method) == pytest.approx(0.0, abs=1e-9), method


@settings(max_examples=100, deadline=None)
@given(
    reference=st.lists(st.sampled_from("abcd"), min_size=1, max_size=100),
    current=st.lists(st.sampled_from("abcdef"), min_size=1, max_size=100),
)
def test_bounds_over_categories(reference: list[str], current: list[str]) -> None:
    baseline = _categorical(reference)
    values = np.array(current, dtype=object)
    assert baseline.score(values, "psi") >= 0.0
    for method in ("jensenshannon", "wasserstein", "ks"):
        assert 0.0 <= baseline.score(values, method) <= 1.0  # type: ignore[arg-type]
    assert baseline.score(np.array(reference, dtype=object), "psi") == pytest.approx(0.0)
