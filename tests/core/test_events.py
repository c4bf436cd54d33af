"""The event bus: prediction subscribers with and without a filter."""

from __future__ import annotations

from serval.core.events import EventBus, PredictionEvent
from serval.core.lifecycle.states import ServableId
from serval.core.types import InferenceRequest


def request(context: object | None) -> InferenceRequest:
    return InferenceRequest(model_name="m", inputs=[], context=context)


def event(context: object | None) -> PredictionEvent:
    return PredictionEvent(ServableId("m", 1), request(context), None, None, 10)


def test_no_subscriber_wants_nothing() -> None:
    assert not EventBus().wants_prediction(request(None))


def test_a_filter_decides_which_predictions_are_built_and_delivered() -> None:
    bus = EventBus()
    unreported: list[PredictionEvent] = []
    bus.on_prediction(unreported.append, lambda r: r.context is None)
    assert bus.wants_prediction(request(None))
    assert not bus.wants_prediction(request("rest_v2"))  # the data plane builds no event

    everything: list[PredictionEvent] = []
    bus.on_prediction(everything.append)
    assert bus.wants_prediction(request("rest_v2"))
    bus.emit(event("rest_v2"))  # wanted by the second subscriber only
    bus.emit(event(None))
    assert [e.request.context for e in unreported] == [None]
    assert [e.request.context for e in everything] == ["rest_v2", None]


def test_a_failing_subscriber_does_not_stop_the_others() -> None:
    bus = EventBus()
    seen: list[PredictionEvent] = []

    def broken(_: PredictionEvent) -> None:
        raise RuntimeError("subscriber bug")

    bus.on_prediction(broken)
    bus.on_prediction(seen.append)
    bus.emit(event(None))
    assert len(seen) == 1
