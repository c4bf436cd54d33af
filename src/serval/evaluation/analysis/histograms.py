"""The histograms PSI and Jensen-Shannon compare (docs/evaluation-methods.md).

Numbers: bins cut at the reference's deciles, deduplicated (a discrete or constant feature has
fewer bins), the outer bins open (``(-inf, d1]`` ... ``(d9, +inf)``) so that current values
beyond the reference's range still count. Categories: the reference's categories plus one
"unseen" bucket that every category the reference never had falls into.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from serval.evaluation.analysis.row_values import FloatArray

DECILES = np.linspace(0.1, 0.9, 9)
# Stands in for an empty bin's share in PSI's logarithm (ln(0) is -inf): small enough not to
# matter for a bin that is merely rare, large enough that one empty bin does not dominate.
PSI_EPSILON = 1e-4


def decile_edges(reference: FloatArray) -> FloatArray:
    """The inner bin edges: the reference's deciles, each once. Each decile is a reference
    value (the smallest whose share at or below reaches it), never one interpolated between
    two: a discrete feature's edges are its own values."""
    return np.unique(np.quantile(reference, DECILES, method="inverted_cdf"))


def binned_shares(values: FloatArray, edges: FloatArray) -> FloatArray:
    """The share of ``values`` in each bin; a value equal to an edge falls in the bin below
    it (right-closed bins), so a discrete value that is an edge has a bin of its own."""
    bins = np.searchsorted(edges, values, side="left")
    counts = np.bincount(bins, minlength=len(edges) + 1).astype(np.float64)
    return counts / max(len(values), 1)


def category_shares(values: np.ndarray[Any, Any], categories: dict[str, int]) -> FloatArray:
    """The share of ``values`` (category texts) in each of ``categories`` (text -> index),
    the last share being the unseen bucket."""
    unseen = len(categories)
    indexes = np.fromiter(
        (categories.get(value, unseen) for value in values.tolist()), np.intp, len(values)
    )
    counts = np.bincount(indexes, minlength=unseen + 1).astype(np.float64)
    return counts / max(len(values), 1)


def psi(reference: FloatArray, current: FloatArray) -> float:
    """Population stability index of two share vectors:
    ``sum((c - r) * ln(c / r))`` with shares below ``PSI_EPSILON`` raised to it. Every term is
    >= 0 (c - r and ln(c / r) have the same sign), so PSI is >= 0, and 0 for equal shares."""
    r = np.maximum(reference, PSI_EPSILON)
    c = np.maximum(current, PSI_EPSILON)
    return float(np.sum((c - r) * np.log(c / r)))


def jensen_shannon(reference: FloatArray, current: FloatArray) -> float:
    """Jensen-Shannon distance (the square root of the divergence) in base 2: 0 for equal
    shares, 1 for shares with no bin in common."""
    from scipy.spatial.distance import jensenshannon  # noqa: PLC0415 - the monitoring extra

    distance = float(jensenshannon(reference, current, base=2))
    # Rounding can leave a hair below 0 (sqrt of -1e-17 is nan) or above 1.
    return 0.0 if np.isnan(distance) else min(max(distance, 0.0), 1.0)
