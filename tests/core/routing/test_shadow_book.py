"""The shadow book: counters per model and shadow version, and what they derive."""

from __future__ import annotations

from serval.core.routing.shadow import ShadowBook


def test_statistics_start_empty_and_derive_agreement_and_difference() -> None:
    book = ShadowBook()
    assert book.statistics("m") == {}
    stats = book.of("m", 3)
    assert stats.as_dict() == {
        "requests": 0,
        "errors": 0,
        "dropped": 0,
        "agreement": None,
        "mean_abs_diff": None,
    }
    stats.requests, stats.compared, stats.agreed = 4, 4, 3
    stats.abs_diff_sum, stats.values_compared = 1.0, 8
    assert book.of("m", 3) is stats
    assert book.statistics("m")[3].agreement == 0.75
    assert book.statistics("m")[3].mean_abs_diff == 0.125
    book.forget("m")
    assert book.statistics("m") == {}
