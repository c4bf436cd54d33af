"""Events the core emits; statistics, observability, the prediction log and caches subscribe.

``StateChanged`` when a version moves through its lifecycle; a ``RequestRecord`` (core.records)
once per inference request, whichever way it came; a ``PredictionEvent`` with the request's
tensors, built only for the requests a subscriber wants (tensor statistics); a ``Feedback``
(core.feedback) for each reward or ground truth a client sends. The core never imports its
subscribers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from serval.core.feedback import Feedback
from serval.core.lifecycle.states import ServableId, ServableState
from serval.core.model_spec import ModelSpec
from serval.core.records import RequestRecord
from serval.core.types import InferenceRequest, InferenceResponse

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class StateChanged:
    id: ServableId
    state: ServableState
    error: str | None = None
    duration_s: float | None = None  # how long the step that ended here took (e.g. loading)
    spec: ModelSpec | None = None  # on LOADING and AVAILABLE: the spec the version loads with


@dataclass(slots=True)
class PredictionEvent:
    """One inference request the data plane answered or failed. Read-only by convention: not
    frozen, because a frozen dataclass costs 0.5 µs more to build, once per request."""

    id: ServableId
    request: InferenceRequest
    response: InferenceResponse | None
    error: Exception | None
    duration_ns: int


PredictionSubscriber = Callable[[PredictionEvent], None]


class EventBus:
    """Synchronous fan-out. A subscriber that raises is logged and does not stop the others."""

    def __init__(self) -> None:
        # Tuples, replaced on subscribe: emit (once per request) iterates without copying.
        self._state_subscribers: tuple[Callable[[StateChanged], None], ...] = ()
        self._prediction_subscribers: tuple[Callable[[PredictionEvent], None], ...] = ()
        # Asked before a PredictionEvent is built; None in the tuple: every prediction.
        self._prediction_filters: tuple[Callable[[InferenceRequest], bool] | None, ...] = ()
        self._request_subscribers: tuple[Callable[[RequestRecord], None], ...] = ()
        self._feedback_subscribers: tuple[Callable[[Feedback], None], ...] = ()
        # Whether a request subscriber reads ``RequestRecord.headers`` (tracing): adapters
        # attach them only then.
        self.wants_headers = False

    def on_state_changed(self, callback: Callable[[StateChanged], None]) -> None:
        self._state_subscribers = (*self._state_subscribers, callback)

    def on_request(
        self, callback: Callable[[RequestRecord], None], *, headers: bool = False
    ) -> None:
        """Call ``callback`` with the record of each inference request, once, when it ends;
        ``headers``: it reads the request's headers (adapters attach them only if asked)."""
        self._request_subscribers = (*self._request_subscribers, callback)
        self.wants_headers = self.wants_headers or headers

    def emit_request(self, record: RequestRecord) -> None:
        """Hand ``record`` to each request subscriber (once per request: no dispatch on type,
        no helper call; a subscriber that raises is logged and does not stop the others)."""
        for callback in self._request_subscribers:
            try:
                callback(record)
            except Exception:
                logger.exception("request subscriber %r failed", callback)

    def on_feedback(self, callback: Callable[[Feedback], None]) -> None:
        """Call ``callback`` with each item of feedback (a reward, a ground truth)."""
        self._feedback_subscribers = (*self._feedback_subscribers, callback)

    def emit_feedback(self, feedback: Feedback) -> None:
        for callback in self._feedback_subscribers:
            self._deliver(callback, feedback)

    def on_prediction(
        self,
        callback: Callable[[PredictionEvent], None],
        wants: Callable[[InferenceRequest], bool] | None = None,
    ) -> None:
        """Call ``callback`` with each prediction, or only those whose request ``wants``
        accepts: the event is built (once per request) only when a subscriber wants it."""
        self._prediction_subscribers = (*self._prediction_subscribers, callback)
        self._prediction_filters = (*self._prediction_filters, wants)

    def wanted_by(self, request: InferenceRequest) -> list[PredictionSubscriber] | None:
        """The prediction subscribers that want the prediction of ``request``, None when none
        does (the data plane asks before building the event). Each filter is asked once per
        request, so a filter may draw a sample (the prediction log)."""
        wanted = None
        # A plain loop, not a comprehension: once per request, and the common answer is none.
        for callback, wants in zip(
            self._prediction_subscribers, self._prediction_filters, strict=True
        ):
            if wants is None or wants(request):
                if wanted is None:
                    wanted = [callback]
                else:
                    wanted.append(callback)
        return wanted

    def emit_prediction(
        self, event: PredictionEvent, subscribers: list[PredictionSubscriber]
    ) -> None:
        """Hand ``event`` to ``subscribers`` (what ``wanted_by`` answered for its request)."""
        for callback in subscribers:
            self._deliver(callback, event)

    def emit(self, event: StateChanged) -> None:
        for on_state in self._state_subscribers:
            self._deliver(on_state, event)

    @staticmethod
    def _deliver(
        callback: Callable[[Any], None], event: StateChanged | PredictionEvent | Feedback
    ) -> None:
        try:
            callback(event)
        except Exception:
            logger.exception("event subscriber %r failed", callback)
