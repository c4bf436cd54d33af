"""Drift: how far each feature's recent values are from the reference's
(docs/evaluation-methods.md).

Every method is a bounded distance or an index, never a p-value: a test's p-value goes to 0 on
any difference at all once the window is large, so a p-value threshold fires on noise at
100,000 rows; a distance between the two distributions does not grow with the window.

- ``psi``: population stability index over the reference's decile bins;
- ``jensenshannon``: Jensen-Shannon distance (base 2, 0..1) over the same bins;
- ``wasserstein``: earth mover's distance divided by the reference's standard deviation;
- ``ks``: the Kolmogorov-Smirnov statistic (the largest gap between the two CDFs, 0..1).

Categorical features (and a classifier's prediction) compare category shares over the
reference's categories plus an "unseen" bucket: PSI with ``psi``, Jensen-Shannon distance with
the others (wasserstein and ks need an order that categories do not have).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from serval.core.specs.monitoring import DriftMethod
from serval.evaluation.analysis.histograms import (
    binned_shares,
    category_shares,
    decile_edges,
    jensen_shannon,
    psi,
)
from serval.evaluation.analysis.reference import Column
from serval.evaluation.analysis.row_values import FloatArray


@dataclass(frozen=True, slots=True)
class FeatureDrift:
    """One subject's drift. ``score`` is None when the window holds no value of it."""

    score: float | None
    drifted: bool
    rows: int  # current values compared
    missing: int  # current values left out: NaN, None (counted, not compared)


class Baseline:
    """What each method needs of one reference column, computed once per reference."""

    def __init__(self, column: Column) -> None:
        self.column = column
        self.categorical = column.kind == "categorical"
        if self.categorical:
            names = sorted(set(column.values.tolist()))
            self.categories = {name: index for index, name in enumerate(names)}
            self.shares = category_shares(column.values, self.categories)
        else:
            self.sorted = np.sort(column.values.astype(np.float64))
            self.edges = decile_edges(self.sorted)
            self.shares = binned_shares(self.sorted, self.edges)
            self.scale = _scale(self.sorted)

    def score(self, current: np.ndarray[Any, Any], method: DriftMethod) -> float:
        """The distance of ``current`` (no missing values, at least one) from the reference."""
        if self.categorical:
            shares = category_shares(current, self.categories)
            if method == "psi":
                return psi(self.shares, shares)
            return jensen_shannon(self.shares, shares)
        if method == "psi":
            return psi(self.shares, binned_shares(current, self.edges))
        if method == "jensenshannon":
            return jensen_shannon(self.shares, binned_shares(current, self.edges))
        if method == "wasserstein":
            from scipy.stats import wasserstein_distance  # noqa: PLC0415 - monitoring extra

            return float(wasserstein_distance(self.sorted, current)) / self.scale
        from scipy.stats import ks_2samp  # noqa: PLC0415 - the monitoring extra

        # The statistic only: "asymp" skips the exact p-value it would compute for nothing, and
        # that p-value's warnings (tiny samples) say nothing about the statistic.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return float(ks_2samp(self.sorted, current, method="asymp").statistic)


def baselines(subjects: Mapping[str, Column]) -> dict[str, Baseline]:
    """A baseline per subject (``Reference.subjects()``)."""
    return {name: Baseline(column) for name, column in subjects.items()}


def feature_drift(
    baseline: Baseline, current: np.ndarray[Any, Any], method: DriftMethod, threshold: float
) -> FeatureDrift:
    """How far ``current`` (float64 with NaN, or category texts with None) has drifted."""
    present = _present(current, baseline.categorical)
    values = current[present]
    missing = len(current) - len(values)
    if not len(values):
        return FeatureDrift(None, False, 0, missing)
    if not baseline.categorical:
        values = values.astype(np.float64)
    score = baseline.score(values, method)
    return FeatureDrift(score, score >= threshold, len(values), missing)


def drift(
    baselines: Mapping[str, Baseline],
    current: Mapping[str, np.ndarray[Any, Any]],
    method: DriftMethod,
    threshold: float,
) -> dict[str, FeatureDrift]:
    """Per subject of ``baselines``, the drift of its ``current`` values (``FeatureMap.columns``);
    a subject without current values scores None."""
    empty = np.empty(0, dtype=object)
    return {
        name: feature_drift(baseline, current.get(name, empty), method, threshold)
        for name, baseline in baselines.items()
    }


def _present(values: np.ndarray[Any, Any], categorical: bool) -> np.ndarray[Any, Any]:
    if categorical or values.dtype == object:
        return np.array([_is_present(value) for value in values.tolist()], dtype=bool)
    present: np.ndarray[Any, Any] = ~np.isnan(values)
    return present


def _is_present(value: object) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def _scale(reference: FloatArray) -> float:
    """What a Wasserstein distance is divided by: the reference's standard deviation; for a
    reference without spread (constant, or a spread lost in rounding: a billionth of its
    magnitude or less, which would make any distance infinite) its magnitude, or 1 for
    zeros, so that any move away from the constant still scores, relative to its size."""
    std = float(np.std(reference))
    magnitude = float(np.max(np.abs(reference)))
    if math.isfinite(std) and std > 1e-9 * max(magnitude, 1.0):
        return std
    return magnitude if magnitude > 1e-9 else 1.0
