"""Metrics of shadow traffic and of feedback.

Shadow copies (request records of role ``"shadow"``) are counted apart from the requests
clients made, so that ``serval_requests_total`` and the latency histograms keep meaning what
clients got; the comparison of shadow answers with the primary ones (agreement, mean absolute
difference, errors, drops) is read from the core's ``ShadowBook`` at scrape time. Feedback
items are counted per model, and how many of them were matched to the version that answered.

Label values: model names the server knows (a copy goes only to a served model; feedback for
an unknown model is refused before it is counted) and versions; never a client's value.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from prometheus_client.metrics_core import Metric

from serval.core.feedback import Feedback
from serval.core.records import RequestRecord
from serval.core.routing.shadow import ShadowStatistics
from serval.observability.instruments import counter_family, gauge_family
from serval.observability.requests import outcome_of

ShadowReport = Callable[[], Mapping[str, Mapping[int, ShadowStatistics]]]

_SHADOW = ("model", "version")


class ShadowMetrics:
    """``on_shadow`` with each shadow copy's record; ``collect`` yields the families."""

    def __init__(self, report: ShadowReport | None = None) -> None:
        """``report``: every model's shadow statistics now (the data plane's book)."""
        self._report = report
        self._outcomes: dict[tuple[str, str, str], int] = {}  # model, version, outcome

    def on_shadow(self, record: RequestRecord) -> None:
        servable = record.servable
        if servable is None:
            return
        key = (servable.name, str(servable.version), outcome_of(record.error))
        self._outcomes[key] = self._outcomes.get(key, 0) + 1

    def collect(self) -> Iterator[Metric]:
        yield counter_family(
            "serval_shadow_requests_total",
            "Shadow copies of requests, by the shadow version and how they ended (the same "
            "outcomes as serval_requests_total, which counts only the requests clients made).",
            (*_SHADOW, "outcome"),
            ((key, float(count)) for key, count in self._outcomes.items()),
        )
        rows = [
            ((model, str(version)), statistics)
            for model, versions in (self._report() if self._report is not None else {}).items()
            for version, statistics in versions.items()
        ]
        yield counter_family(
            "serval_shadow_errors_total",
            "Shadow copies that failed (the model raised, timed out, or was not available).",
            _SHADOW,
            ((labels, float(s.errors)) for labels, s in rows),
        )
        yield counter_family(
            "serval_shadow_dropped_total",
            "Shadow copies never sent: too many were in flight already.",
            _SHADOW,
            ((labels, float(s.dropped)) for labels, s in rows),
        )
        yield counter_family(
            "serval_shadow_compared_total",
            "Shadow answers whose labels were compared with the primary answer's.",
            _SHADOW,
            ((labels, float(s.compared)) for labels, s in rows),
        )
        yield gauge_family(
            "serval_shadow_agreement",
            "Of the shadow answers compared, the share whose labels (or argmax of scores) "
            "agreed with the primary answer's.",
            _SHADOW,
            ((labels, s.agreement) for labels, s in rows if s.agreement is not None),
        )
        yield gauge_family(
            "serval_shadow_mean_abs_diff",
            "Mean absolute difference between the shadow's and the primary's floating-point "
            "outputs, over every value compared.",
            _SHADOW,
            ((labels, s.mean_abs_diff) for labels, s in rows if s.mean_abs_diff is not None),
        )


class FeedbackMetrics:
    """Subscribe ``on_feedback``; ``collect`` yields the families."""

    def __init__(self) -> None:
        self._items: dict[str, list[int]] = {}  # model -> [accepted, matched]

    def on_feedback(self, feedback: Feedback) -> None:
        counts = self._items.get(feedback.model)
        if counts is None:
            counts = self._items[feedback.model] = [0, 0]
        counts[0] += 1
        counts[1] += feedback.matched

    def collect(self) -> Iterator[Metric]:
        items = list(self._items.items())
        yield counter_family(
            "serval_feedback_items_total",
            "Feedback items accepted (rewards and ground truths), per model.",
            ("model",),
            (((model,), float(counts[0])) for model, counts in items),
        )
        yield counter_family(
            "serval_feedback_matched_total",
            "Feedback items matched to the version that answered their request id.",
            ("model",),
            (((model,), float(counts[1])) for model, counts in items),
        )
