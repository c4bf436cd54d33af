"""One contract for every evaluation store (serval.storage.evaluation): the same tests against
memory, a SQLite file and the machine's PostgreSQL (a schema per test)."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from serval.storage.evaluation import (
    Alert,
    GroundTruth,
    Trigger,
    VersionCounts,
)
from tests.storage.evaluation_stores import (
    KINDS,
    NOW,
    StoreFactory,
    at_once,
    prediction,
    store_factory,
)


@pytest.fixture(params=KINDS)
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    with store_factory(request.param, tmp_path) as factory:
        yield factory


def truth(
    value: object, *, request_id: str | None = None, key: str | None = None, at: float = NOW
) -> GroundTruth:
    return GroundTruth("m", request_id, key, repr(value).encode(), at)


def alert(subject: str = "accuracy", *, version: int = 1, at: float = NOW) -> Alert:
    return Alert("m", version, "quality", subject, 0.5, 0.8, at, delivery="pending")


# -- predictions ----------------------------------------------------------------------------------


def test_predictions_read_back_newest_first_per_version_and_role(open_store: StoreFactory) -> None:
    store = open_store()
    store.write_predictions([prediction(f"r{i}", at=NOW + i) for i in range(5)])
    store.write_predictions(
        [
            prediction("v2", version=2),
            prediction("s1", role="shadow", at=NOW + 10),
            prediction("other", model="other"),
            prediction(None, at=NOW + 20, keys=("a", "b")),
        ]
    )
    recent = store.recent_predictions("m", 1, 3)
    assert [p.request_id for p in recent] == [None, "r4", "r3"]
    assert recent[0].keys == ("a", "b") and recent[0].rows == 2
    first = store.recent_predictions("m", 1, 10)[-1]
    assert first.id is not None
    assert first == dataclasses.replace(prediction("r0", at=NOW), id=first.id)
    assert [p.request_id for p in store.recent_predictions("m", 1, 10, role="shadow")] == ["s1"]
    assert [p.request_id for p in store.recent_predictions("m", 2, 10)] == ["v2"]
    assert store.recent_predictions("m", 3, 10) == []
    assert store.recent_predictions("m", 1, 0) == []
    ids = [p.id for p in store.recent_predictions("m", 1, 10)]
    assert len(set(ids)) == len(ids)


def test_an_empty_batch_writes_nothing(open_store: StoreFactory) -> None:
    store = open_store()
    store.write_predictions([])
    assert store.write_ground_truth([]) == 0
    assert store.counts("m") == {}
    assert list(store.joined("m")) == []


# -- ground truth by request id -------------------------------------------------------------------


def test_ground_truth_by_id_joins_a_logged_prediction(open_store: StoreFactory) -> None:
    store = open_store()
    store.write_predictions([prediction("a"), prediction("b", at=NOW + 1)])
    assert store.write_ground_truth([truth([1], request_id="a", at=NOW + 5)]) == 1
    assert store.write_ground_truth([truth([0], request_id="unknown")]) == 0
    [labelled] = store.labelled("m", 1, 10)
    assert labelled.prediction.request_id == "a"
    assert labelled.label.value == b"[1]" and labelled.label.row is None
    assert labelled.label.received == NOW + 5
    assert store.counts("m") == {1: VersionCounts(logged=2, labelled=1)}


def test_ground_truth_before_its_prediction_is_joined_when_it_is_logged(
    open_store: StoreFactory,
) -> None:
    store = open_store()
    assert store.write_ground_truth([truth("cat", request_id="early")]) == 0
    assert store.labelled("m", 1, 10) == []
    store.write_predictions([prediction("early", at=NOW + 1), prediction("other")])
    [labelled] = store.labelled("m", 1, 10)
    assert labelled.prediction.request_id == "early"
    assert labelled.label.value == b"'cat'"
    assert store.counts("m") == {1: VersionCounts(logged=2, labelled=1)}


def test_ground_truth_by_id_labels_the_shadow_copies_too(open_store: StoreFactory) -> None:
    store = open_store()
    store.write_predictions([prediction("r", version=1)])
    assert store.write_ground_truth([truth(1, request_id="r")]) == 1
    store.write_predictions([prediction("r", version=2, role="shadow")])  # the copy, later
    [page] = store.joined("m")
    assert [(p.prediction.version, len(p.labels)) for p in page] == [(1, 1), (2, 1)]
    assert store.labelled("m", 2, 10) == []  # quality is of primary answers
    assert store.counts("m") == {1: VersionCounts(logged=1, labelled=1)}


def test_a_prediction_labelled_twice_counts_once(open_store: StoreFactory) -> None:
    store = open_store()
    store.write_predictions([prediction("r")])
    store.write_ground_truth([truth(1, request_id="r", at=NOW + 1)])
    store.write_ground_truth([truth(2, request_id="r", at=NOW + 2)])
    assert [x.label.value for x in store.labelled("m", 1, 10)] == [b"2", b"1"]
    assert store.counts("m") == {1: VersionCounts(logged=1, labelled=1)}


# -- ground truth by key --------------------------------------------------------------------------


def test_ground_truth_by_key_labels_the_latest_row_answered_before_it(
    open_store: StoreFactory,
) -> None:
    store = open_store()
    store.write_predictions(
        [
            prediction("old", at=NOW, keys=("u1", "u2")),
            prediction("new", at=NOW + 10, keys=("u3", "u1")),
            prediction("after", at=NOW + 100, keys=("u1",)),
            prediction("shadow", at=NOW + 20, keys=("u1",), role="shadow", version=2),
        ]
    )
    assert store.write_ground_truth([truth(1, key="u1", at=NOW + 50)]) == 1
    [labelled] = store.labelled("m", 1, 10)
    assert labelled.prediction.request_id == "new" and labelled.label.row == 1
    assert store.write_ground_truth([truth(0, key="u2", at=NOW + 50)]) == 1
    assert store.labelled("m", 1, 1)[0].label.row == 1
    assert store.labelled("m", 1, 1)[0].prediction.request_id == "old"
    assert store.counts("m") == {1: VersionCounts(logged=3, labelled=2)}


def test_ground_truth_by_key_before_its_prediction_waits_for_it(open_store: StoreFactory) -> None:
    store = open_store()
    assert store.write_ground_truth([truth("yes", key="k", at=NOW + 50)]) == 0
    # Answered after the ground truth came: not what it labels.
    store.write_predictions([prediction("late", at=NOW + 60, keys=("k",))])
    assert store.labelled("m", 1, 10) == []
    # Answered before it (the log was behind): joined, to the latest such row.
    store.write_predictions(
        [prediction("a", at=NOW + 10, keys=("x", "k")), prediction("b", at=NOW + 20, keys=("k",))]
    )
    [labelled] = store.labelled("m", 1, 10)
    assert labelled.prediction.request_id == "b" and labelled.label.row == 0
    # Once joined it stays joined.
    store.write_predictions([prediction("c", at=NOW + 30, keys=("k",))])
    assert [x.prediction.request_id for x in store.labelled("m", 1, 10)] == ["b"]
    assert store.counts("m")[1] == VersionCounts(logged=4, labelled=1)


# -- reads ----------------------------------------------------------------------------------------


def test_labelled_is_newest_label_first_and_limited(open_store: StoreFactory) -> None:
    store = open_store()
    store.write_predictions([prediction(f"r{i}") for i in range(4)])
    store.write_predictions([prediction("v2", version=2)])
    store.write_ground_truth([truth(i, request_id=f"r{i}", at=NOW + 10 - i) for i in range(4)])
    store.write_ground_truth([truth(9, request_id="v2")])
    assert [x.prediction.request_id for x in store.labelled("m", 1, 3)] == ["r0", "r1", "r2"]
    assert [x.prediction.request_id for x in store.labelled("m", 2, 3)] == ["v2"]
    assert store.labelled("other", 1, 3) == []


def test_counts_per_version(open_store: StoreFactory) -> None:
    store = open_store()
    store.write_predictions([prediction(f"a{i}", version=1) for i in range(3)])
    store.write_predictions([prediction(f"b{i}", version=2) for i in range(2)])
    store.write_predictions([prediction("s", version=3, role="shadow")])
    store.write_predictions([prediction("o", model="other")])
    store.write_ground_truth([truth(1, request_id="b0"), truth(1, request_id="b1")])
    assert store.counts("m") == {
        1: VersionCounts(logged=3, labelled=0),
        2: VersionCounts(logged=2, labelled=2),
    }
    assert store.counts("other") == {1: VersionCounts(logged=1, labelled=0)}
    assert store.counts("nobody") == {}


def test_joined_pages_every_prediction_in_log_order_with_its_labels(
    open_store: StoreFactory,
) -> None:
    store = open_store()
    store.write_predictions([prediction(f"r{i}", version=1 + i % 2) for i in range(5)])
    store.write_predictions([prediction("o", model="other")])
    store.write_predictions([prediction("s", role="shadow")])
    store.write_ground_truth([truth(1, request_id="r1", at=NOW + 1)])
    store.write_ground_truth([truth(2, request_id="r1", at=NOW + 2), truth(3, request_id="r4")])
    pages = list(store.joined("m", batch=2))
    assert [len(page) for page in pages] == [2, 2, 2]
    flat = [entry for page in pages for entry in page]
    assert [e.prediction.request_id for e in flat] == ["r0", "r1", "r2", "r3", "r4", "s"]
    assert [[label.value for label in e.labels] for e in flat] == [
        [],
        [b"1", b"2"],
        [],
        [],
        [b"3"],
        [],
    ]
    assert [len(page) for page in store.joined("m")] == [6]


# -- alerts ---------------------------------------------------------------------------------------


def test_an_alert_is_raised_once_until_cleared(open_store: StoreFactory) -> None:
    store = open_store()
    raised = store.raise_alert(alert())
    assert raised is not None and raised.id is not None and raised.cleared is None
    assert store.raise_alert(alert(at=NOW + 1)) is None
    other = store.raise_alert(alert("f1_macro"))
    assert other is not None and other.id != raised.id
    assert store.raise_alert(alert(version=2)) is not None
    assert store.clear_alert("m", 1, "quality", "accuracy", NOW + 5)
    assert not store.clear_alert("m", 1, "quality", "accuracy", NOW + 6)
    assert not store.clear_alert("m", 1, "drift", "accuracy", NOW + 6)
    again = store.raise_alert(alert(at=NOW + 10))
    assert again is not None and again.id not in (raised.id, other.id)
    listed = store.alerts("m")
    assert [(a.subject, a.version, a.raised) for a in listed] == [
        ("accuracy", 1, NOW + 10),
        ("accuracy", 2, NOW),  # raised at the same time: the later first
        ("f1_macro", 1, NOW),
        ("accuracy", 1, NOW),
    ]
    assert listed[-1].cleared == NOW + 5 and listed[0].cleared is None
    assert len(store.alerts("m", limit=2)) == 2
    assert store.alerts("other") == []


def test_delivery_is_recorded(open_store: StoreFactory) -> None:
    store = open_store()
    raised = store.raise_alert(alert())
    assert raised is not None and raised.id is not None and raised.delivery == "pending"
    store.set_delivery(raised.id, "failed", "HTTP 500 after 5 tries")
    [listed] = store.alerts("m")
    assert (listed.delivery, listed.detail) == ("failed", "HTTP 500 after 5 tries")
    store.set_delivery(raised.id, "delivered")
    [listed] = store.alerts("m")
    assert (listed.delivery, listed.detail) == ("delivered", "")
    store.set_delivery(10_000, "delivered")  # no such alert: nothing happens


def test_an_alert_raised_at_once_by_many_is_raised_once(open_store: StoreFactory) -> None:
    stores = [open_store(), open_store()]  # two processes' worth
    count = iter(range(1000))
    lock = threading.Lock()

    def raise_one() -> Alert | None:
        with lock:
            store = stores[next(count) % 2]
        return store.raise_alert(alert())

    results = at_once(8, raise_one)
    assert len([r for r in results if r is not None]) == 1
    assert len(stores[0].alerts("m")) == 1


# -- triggers -------------------------------------------------------------------------------------


def test_a_trigger_claim_waits_out_the_cooldown(open_store: StoreFactory) -> None:
    store = open_store()
    assert store.claim_trigger("m", NOW, 60)
    assert not store.claim_trigger("m", NOW + 30, 60)
    assert store.claim_trigger("other", NOW + 30, 60)
    assert store.claim_trigger("m", NOW + 60, 60)
    assert not store.claim_trigger("m", NOW + 119, 60)
    assert store.claim_trigger("m", NOW + 119, 10)


def test_of_two_claims_at_once_one_wins(open_store: StoreFactory) -> None:
    stores = [open_store(), open_store()]
    picks = iter(range(1000))
    lock = threading.Lock()

    def claim() -> bool:
        with lock:
            store = stores[next(picks) % 2]
        return store.claim_trigger("m", NOW, 300)

    assert sorted(at_once(6, claim)) == [False] * 5 + [True]


def test_triggers_are_recorded_newest_first(open_store: StoreFactory) -> None:
    store = open_store()
    first = store.record_trigger(Trigger("m", 1, None, NOW, "webhook", "ok"))
    second = store.record_trigger(Trigger("m", 2, 7, NOW + 1, "webhook+command", "exited 2"))
    store.record_trigger(Trigger("other", 1, None, NOW, "command", "ok"))
    assert first.id is not None and second.id is not None and first.id != second.id
    assert store.triggers("m") == [second, first]
    assert store.triggers("m", limit=1) == [second]
    assert store.triggers("nobody") == []


# -- persistence ----------------------------------------------------------------------------------


def test_what_is_written_outlives_the_store_object(open_store: StoreFactory) -> None:
    store = open_store()
    store.write_predictions([prediction("r", keys=("k",))])
    store.write_ground_truth([truth(1, key="k", at=NOW + 1)])
    store.write_ground_truth([truth(2, key="late", at=NOW + 1)])
    raised = store.raise_alert(alert())
    store.claim_trigger("m", NOW, 60)
    store.close()
    reopened = open_store()
    assert [x.prediction.request_id for x in reopened.labelled("m", 1, 10)] == ["r"]
    assert reopened.counts("m") == {1: VersionCounts(1, 1)}
    assert reopened.raise_alert(alert()) is None
    assert reopened.alerts("m") == [raised]
    assert not reopened.claim_trigger("m", NOW + 1, 60)
    reopened.write_predictions([prediction("late", keys=("late",))])  # the waiting item
    assert len(reopened.labelled("m", 1, 10)) == 2


def test_writes_from_many_threads_and_stores_all_land(open_store: StoreFactory) -> None:
    stores = [open_store(), open_store()]
    batches = iter(range(1000))
    lock = threading.Lock()

    def write() -> None:
        with lock:
            n = next(batches)
        stores[n % 2].write_predictions([prediction(f"{n}-{i}", keys=(f"{n}",)) for i in range(50)])
        stores[n % 2].write_ground_truth([truth(n, request_id=f"{n}-0")])

    at_once(6, write)
    assert stores[1].counts("m") == {1: VersionCounts(logged=300, labelled=6)}
