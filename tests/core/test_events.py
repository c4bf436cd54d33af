"""The event bus: prediction subscribers with and without a filter, request records."""

from __future__ import annotations

from serval.core.events import EventBus, PredictionEvent
from serval.core.feedback import Feedback
from serval.core.lifecycle.states import ServableId
from serval.core.records import RequestRecord
from serval.core.types import InferenceRequest


def request(model: str) -> InferenceRequest:
    return InferenceRequest(model_name=model, inputs=[])


def event(model: str) -> PredictionEvent:
    return PredictionEvent(ServableId(model, 1), request(model), None, None, 10)


def emit(bus: EventBus, prediction: PredictionEvent) -> None:
    """As the data plane does: ask who wants it, build and hand it to them."""
    wanted = bus.wanted_by(prediction.request)
    if wanted is not None:
        bus.emit_prediction(prediction, wanted)


def test_no_subscriber_wants_nothing() -> None:
    assert EventBus().wanted_by(request("m")) is None


def test_a_filter_decides_which_predictions_are_built_and_delivered() -> None:
    bus = EventBus()
    monitored: list[PredictionEvent] = []
    bus.on_prediction(monitored.append, lambda r: r.model_name == "monitored")
    assert bus.wanted_by(request("monitored")) == [monitored.append]
    assert bus.wanted_by(request("m")) is None  # the data plane builds no event

    everything: list[PredictionEvent] = []
    bus.on_prediction(everything.append)
    assert bus.wanted_by(request("m")) == [everything.append]
    emit(bus, event("m"))  # wanted by the second subscriber only
    emit(bus, event("monitored"))
    assert [e.request.model_name for e in monitored] == ["monitored"]
    assert [e.request.model_name for e in everything] == ["m", "monitored"]


def test_each_filter_is_asked_once_per_request() -> None:
    bus = EventBus()
    asked: list[str] = []
    seen: list[PredictionEvent] = []

    def draw(r: InferenceRequest) -> bool:  # a sample: asked twice, it could differ
        asked.append(r.model_name)
        return True

    bus.on_prediction(seen.append, draw)
    emit(bus, event("m"))
    assert asked == ["m"] and len(seen) == 1


def test_a_failing_subscriber_does_not_stop_the_others() -> None:
    bus = EventBus()
    seen: list[PredictionEvent] = []

    def broken(_: PredictionEvent) -> None:
        raise RuntimeError("subscriber bug")

    bus.on_prediction(broken)
    bus.on_prediction(seen.append)
    emit(bus, event("m"))
    assert len(seen) == 1


def test_request_records_reach_each_subscriber_and_headers_are_asked_for() -> None:
    bus = EventBus()
    assert not bus.wants_headers
    seen: list[RequestRecord] = []

    def broken(_: RequestRecord) -> None:
        raise RuntimeError("subscriber bug")

    bus.on_request(broken)
    bus.on_request(seen.append, headers=True)
    assert bus.wants_headers
    record = RequestRecord("grpc", "op", "m", 1)
    bus.emit_request(record)
    assert seen == [record]


def test_feedback_reaches_every_subscriber_even_after_one_raises() -> None:
    bus = EventBus()
    received: list[Feedback] = []

    def broken(_: Feedback) -> None:
        raise RuntimeError("subscriber bug")

    bus.on_feedback(broken)
    bus.on_feedback(received.append)
    item = Feedback("m", "req-1", ServableId("m", 2), received=0.0, reward=1.0)
    bus.emit_feedback(item)
    assert received == [item]
    assert item.matched
    assert not Feedback("m", "req-2", None, received=0.0).matched
