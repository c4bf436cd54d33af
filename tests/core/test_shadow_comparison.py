"""Comparing a shadow answer with the primary's: labels, argmax of scores, numbers."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from serval.core.routing.shadow import ShadowStatistics
from serval.core.shadow_comparison import compare_answers
from serval.core.types import InferenceResponse, Tensor


def answer(**outputs: np.ndarray[Any, Any]) -> InferenceResponse:
    return InferenceResponse("m", [Tensor.from_numpy(name, data) for name, data in outputs.items()])


def test_bytes_and_integer_labels_compare_value_for_value() -> None:
    labels = np.array([b"cat", b"dog"], dtype=object)
    same = compare_answers(answer(y=labels), answer(y=labels.copy()))
    assert (same.labelled, same.agreed, same.values) == (True, True, 0)
    other = compare_answers(
        answer(y=np.array([1, 2], np.int64)), answer(y=np.array([1, 3], np.int64))
    )
    assert (other.labelled, other.agreed, other.values) == (True, False, 0)


def test_scores_agree_by_argmax_and_differ_by_their_values() -> None:
    primary = answer(p=np.array([[0.9, 0.1], [0.2, 0.8]], np.float32))
    shadow = answer(p=np.array([[0.6, 0.4], [0.4, 0.6]], np.float32))
    result = compare_answers(primary, shadow)
    assert (result.labelled, result.agreed, result.values) == (True, True, 4)
    assert result.abs_diff_sum == pytest.approx(1.0, rel=1e-6)


def test_regression_outputs_have_no_labels_and_skip_non_finite_values() -> None:
    primary = answer(y=np.array([[1.0], [np.nan], [3.0]], np.float64))
    shadow = answer(y=np.array([[1.5], [2.0], [np.inf]], np.float64))
    result = compare_answers(primary, shadow)
    assert (result.labelled, result.values, result.abs_diff_sum) == (False, 1, 0.5)
    statistics = ShadowStatistics()
    result.account(statistics)
    assert statistics.agreement is None  # nothing a client acts on was compared
    assert statistics.mean_abs_diff == 0.5


def test_only_shared_outputs_count_and_a_shape_change_disagrees() -> None:
    primary = answer(y=np.zeros((2, 3), np.float32), extra=np.ones(2, np.int64))
    shadow = answer(y=np.zeros((2, 4), np.float32), other=np.ones(2, np.int64))
    result = compare_answers(primary, shadow)
    assert (result.labelled, result.agreed, result.values) == (True, False, 0)
