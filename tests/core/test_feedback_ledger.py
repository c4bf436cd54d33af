"""The answer ledger (which version answered each id, bounded) and the data plane's feedback."""

from __future__ import annotations

import time

import numpy as np
import pytest

from serval.core.dataplane import DataPlane, ServerMetadata
from serval.core.errors import ModelNotFoundError
from serval.core.events import EventBus
from serval.core.feedback import Feedback, FeedbackItem
from serval.core.feedback_ledger import AnswerLedger
from serval.core.lifecycle.states import ServableId
from serval.core.records import RequestRecord
from serval.core.tensors.datatypes import DataType
from serval.core.types import InferenceRequest, Tensor
from tests.core.fakes import Harness

M1 = ServableId("m", 1)
M2 = ServableId("m", 2)


class Clock:
    """A clock the test moves (nanoseconds)."""

    def __init__(self) -> None:
        self.now_ns = 10**12

    def __call__(self) -> int:
        return self.now_ns

    def advance(self, seconds: float) -> None:
        self.now_ns += int(seconds * 1e9)


def answered(request_id: str, servable: ServableId = M1, at_ns: int | None = None) -> RequestRecord:
    record = RequestRecord("rest_v2", "op", servable.name, time.perf_counter_ns())
    record.servable, record.request_id = servable, request_id
    record.finished_ns = time.perf_counter_ns() if at_ns is None else at_ns
    return record


def test_remembers_at_most_max_ids_oldest_first() -> None:
    ledger = AnswerLedger(max_ids=3)
    for index in range(5):
        ledger.on_request(answered(f"r{index}", M1 if index % 2 else M2))
    assert len(ledger) == 3
    answers = [ledger.answered("m", f"r{index}") for index in range(5)]
    assert answers == [None, None, (M2, 0), (M1, 0), (M2, 0)]
    ledger.on_request(answered("r2"))  # an id used again moves to the young end
    ledger.on_request(answered("r5"))
    assert ledger.answered("m", "r3") is None
    assert ledger.answered("m", "r2") == (M1, 0)


def test_forgets_ids_older_than_ttl_to_within_a_sixtieth() -> None:
    clock = Clock()
    ledger = AnswerLedger(ttl_s=60.0, clock=clock)
    ledger.on_request(answered("old", at_ns=clock()))
    clock.advance(30.0)
    ledger.on_request(answered("new", at_ns=clock()))
    clock.advance(30.0)  # "old" is 60 s old: still remembered (its slice closed later)
    assert ledger.answered("m", "old") == (M1, 0)
    clock.advance(31.0)  # 91 s: "old" is gone, "new" (61 s) is not yet, to within 1 s
    assert ledger.answered("m", "old") is None
    assert ledger.answered("m", "new") == (M1, 0)
    clock.advance(1.1)
    assert ledger.answered("m", "new") is None
    assert len(ledger) == 0


def test_a_million_ids_fit_in_slices_of_a_sixty_first() -> None:
    ledger = AnswerLedger(max_ids=61_000)
    for index in range(70_000):
        ledger.on_request(answered(f"r{index}"))
    assert 60_000 <= len(ledger) <= 61_000
    assert ledger.answered("m", "r0") is None
    assert ledger.answered("m", "r69999") == (M1, 0)


def test_only_successful_primary_answers_of_the_model_match() -> None:
    ledger = AnswerLedger()
    failed = answered("failed")
    failed.error = ValueError("boom")
    shadow = answered("shadowed", M2)
    shadow.role = "shadow"
    unresolved = answered("unresolved")
    unresolved.servable = None
    for record in (failed, shadow, unresolved, answered("other", ServableId("n", 1))):
        ledger.on_request(record)
    assert ledger.answered("m", "failed") is None
    assert ledger.answered("m", "shadowed") is None
    assert ledger.answered("m", "unresolved") is None
    assert ledger.answered("m", "other") is None  # answered by another model
    assert ledger.answered("n", "other") == (ServableId("n", 1), 0)


def test_bounds_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_ids"):
        AnswerLedger(max_ids=0)
    with pytest.raises(ValueError, match="ttl_s"):
        AnswerLedger(ttl_s=0)


def test_the_ledger_remembers_the_rows_of_each_answer() -> None:
    ledger = AnswerLedger()
    record = answered("batch")
    record.rows = 7
    ledger.on_request(record)
    assert ledger.answered("m", "batch") == (M1, 7)


def test_feedback_items_need_an_id_and_a_finite_reward_or_a_ground_truth() -> None:
    with pytest.raises(ValueError, match="request id"):
        FeedbackItem("", reward=1.0)
    with pytest.raises(ValueError, match="not both"):
        FeedbackItem("r1", ground_truth=1, key="k")
    with pytest.raises(ValueError, match="reward is given on a request id"):
        FeedbackItem(None, reward=1.0, key="k")
    with pytest.raises(ValueError, match="reward or a ground truth"):
        FeedbackItem("r1")
    with pytest.raises(ValueError, match="finite"):
        FeedbackItem("r1", reward=float("nan"))


def test_data_plane_matches_feedback_to_the_version_that_answered() -> None:
    harness = Harness()
    harness.source.add_version("m", 1)
    bus = EventBus()
    received: list[Feedback] = []
    bus.on_feedback(received.append)
    plane = DataPlane(harness.manager, bus, ServerMetadata("serval", "0", ()))
    x = Tensor("x", DataType.FP32, np.zeros(1, np.float32))

    async def test(h: Harness) -> None:
        await h.manager.start()
        await plane.infer(InferenceRequest("m", [x], id="known"))
        items = [FeedbackItem("known", reward=1.0), FeedbackItem("unknown", ground_truth=[3])]
        assert await plane.feedback("m", items) == (2, 1)
        with pytest.raises(ModelNotFoundError):
            await plane.feedback("nope", items)

    harness.run(test)
    assert [(f.request_id, f.servable, f.reward, f.ground_truth) for f in received] == [
        ("known", M1, 1.0, None),
        ("unknown", None, None, [3]),
    ]
    assert all(f.model == "m" and f.received > 0 for f in received)
