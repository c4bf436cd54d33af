"""Events the core emits; observability, the prediction log and caches subscribe.

The core never imports its subscribers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from serval.core.model_spec import ModelSpec
from serval.core.states import ServableId, ServableState
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


Event = StateChanged | PredictionEvent


class EventBus:
    """Synchronous fan-out. A subscriber that raises is logged and does not stop the others."""

    def __init__(self) -> None:
        # Tuples, replaced on subscribe: emit (once per request) iterates without copying.
        self._state_subscribers: tuple[Callable[[StateChanged], None], ...] = ()
        self._prediction_subscribers: tuple[Callable[[PredictionEvent], None], ...] = ()

    def on_state_changed(self, callback: Callable[[StateChanged], None]) -> None:
        self._state_subscribers = (*self._state_subscribers, callback)

    def on_prediction(self, callback: Callable[[PredictionEvent], None]) -> None:
        self._prediction_subscribers = (*self._prediction_subscribers, callback)

    @property
    def wants_predictions(self) -> bool:
        return bool(self._prediction_subscribers)

    def emit(self, event: Event) -> None:
        subscribers: tuple[Callable[..., None], ...] = (
            self._state_subscribers
            if isinstance(event, StateChanged)
            else self._prediction_subscribers
        )
        for callback in subscribers:
            try:
                callback(event)
            except Exception:
                logger.exception("event subscriber %r failed", callback)
