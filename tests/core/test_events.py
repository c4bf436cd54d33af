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


def test_no_subscriber_wants_nothing() -> None:
    assert not EventBus().wants_prediction(request("m"))


def test_a_filter_decides_which_predictions_are_built_and_delivered() -> None:
    bus = EventBus()
    monitored: list[PredictionEvent] = []
    bus.on_prediction(monitored.append, lambda r: r.model_name == "monitored")
    assert bus.wants_prediction(request("monitored"))
    assert not bus.wants_prediction(request("m"))  # the data plane builds no event

    everything: list[PredictionEvent] = []
    bus.on_prediction(everything.append)
    assert bus.wants_prediction(request("m"))
    bus.emit(event("m"))  # wanted by the second subscriber only
    bus.emit(event("monitored"))
    assert [e.request.model_name for e in monitored] == ["monitored"]
    assert [e.request.model_name for e in everything] == ["m", "monitored"]


def test_a_failing_subscriber_does_not_stop_the_others() -> None:
    bus = EventBus()
    seen: list[PredictionEvent] = []

    def broken(_: PredictionEvent) -> None:
        raise RuntimeError("subscriber bug")

    bus.on_prediction(broken)
    bus.on_prediction(seen.append)
    bus.emit(event("m"))
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
