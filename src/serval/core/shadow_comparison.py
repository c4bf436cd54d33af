"""How a shadow answer compares with the primary answer of the same request.

Only the outputs both answers have are compared, by name. Labels are what a client acts on:
integer, boolean and BYTES outputs compare value for value, and a floating-point output of
shape ``[n, k]`` with ``k > 1`` (class scores) compares by its argmax per row. The request
agrees when every label it carries agrees; an output whose shape differs between the two
answers is a disagreement. Numbers are floating-point outputs of the same shape: their
absolute differences are summed over the finite ones (a NaN or an infinity on either side is
left out, so that one bad value cannot poison the mean).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from serval.core.routing.shadow import ShadowStatistics
from serval.core.types import InferenceResponse, Tensor

__all__ = ["Comparison", "compare_answers"]


@dataclass(frozen=True, slots=True)
class Comparison:
    """``labelled``: some label was compared (else ``agreed`` means nothing); ``abs_diff_sum``
    over ``values`` finite floating-point values."""

    labelled: bool
    agreed: bool
    abs_diff_sum: float
    values: int

    def account(self, statistics: ShadowStatistics) -> None:
        """Add this comparison to a shadow version's counters."""
        if self.labelled:
            statistics.compared += 1
            statistics.agreed += self.agreed
        statistics.abs_diff_sum += self.abs_diff_sum
        statistics.values_compared += self.values


def compare_answers(primary: InferenceResponse, shadow: InferenceResponse) -> Comparison:
    """Compare ``shadow`` with ``primary`` over the outputs both have."""
    theirs = {tensor.name: tensor for tensor in shadow.outputs}
    labelled = False
    agreed = True
    diff_sum = 0.0
    values = 0
    for ours in primary.outputs:
        other = theirs.get(ours.name)
        if other is None:
            continue
        a, b = ours.data, other.data
        if a.shape != b.shape:
            labelled, agreed = True, False
            continue
        if not (_floating(ours) and _floating(other)):
            labelled = True
            agreed = agreed and bool(np.array_equal(a, b))
            continue
        if a.ndim == 2 and a.shape[1] > 1:  # class scores: the label is the argmax
            labelled = True
            agreed = agreed and bool(np.array_equal(a.argmax(axis=1), b.argmax(axis=1)))
        differences = np.abs(np.subtract(a, b, dtype=np.float64))
        total = float(differences.sum())
        if math.isfinite(total):  # the common case: no NaN or infinity to leave out
            diff_sum += total
            values += differences.size
        else:
            finite: np.ndarray[Any, Any] = differences[np.isfinite(differences)]
            diff_sum += float(finite.sum())
            values += int(finite.size)
    return Comparison(labelled, agreed, diff_sum, values)


def _floating(tensor: Tensor) -> bool:
    return bool(tensor.data.dtype.kind == "f")
