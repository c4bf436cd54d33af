"""AlertBook: a crossing raises one alert while it lasts, a return clears it, a new crossing
raises again; what a raised alert sets off (log line, on_alert, webhook, rollback); replicas
sharing a store raise it once between them."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from serval.core.specs.monitoring import DriftSpec, MonitoringSpec, QualitySpec
from serval.evaluation.alerting.alerts import (
    AlertBook,
    AlertPlan,
    Reading,
    drift_readings,
    quality_reading,
)
from serval.storage.evaluation import Alert, EvaluationStore
from tests.evaluation.alert_kit import WAIT_S, Webhook

ACCURACY = QualitySpec(metric="accuracy", min=0.8)


def accuracy(value: float) -> list[Reading]:
    reading = quality_reading(ACCURACY, value)
    assert reading is not None
    return [reading]


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    with Webhook() as receiver:
        yield receiver


@pytest.fixture
def book(store: EvaluationStore) -> Iterator[AlertBook]:
    book = AlertBook(store)  # type: ignore[arg-type]  # the alert and trigger methods only
    yield book
    book.close(grace_s=1.0)


def settle(book: AlertBook) -> None:
    assert book.wait_idle(WAIT_S), "the background deliveries did not finish"


def test_quality_readings_hold_the_metric_to_its_min_or_max() -> None:
    assert accuracy(0.79)[0].breached
    assert not accuracy(0.8)[0].breached
    rmse = quality_reading(QualitySpec(metric="rmse", max=2.0), 2.5)
    assert rmse == Reading("quality", "rmse", 2.5, 2.0, "max")
    assert rmse.breached
    assert quality_reading(QualitySpec(metric="rmse", max=2.0), 2.0) is not None
    assert quality_reading(ACCURACY, float("nan")) is None  # no value: the alert stays
    assert quality_reading(QualitySpec(metric="accuracy"), 0.1) is None  # no threshold


def test_drift_readings_breach_when_the_score_reaches_the_threshold() -> None:
    readings = drift_readings(
        DriftSpec(method="psi"), {"x": 0.2, "y": 0.05, "prediction": 0.7, "z": float("nan")}
    )
    assert [(r.subject, r.threshold, r.breached) for r in readings] == [
        ("x", 0.2, True),
        ("y", 0.2, False),
        ("prediction", 0.2, True),
    ]
    (ks,) = drift_readings(DriftSpec(method="ks", threshold=0.3), {"x": 0.29})
    assert (ks.threshold, ks.breached) == (0.3, False)


def test_an_alert_reaches_the_webhook_once_while_it_lasts(
    store: EvaluationStore, book: AlertBook, webhook: Webhook, tmp_path: Path
) -> None:
    plan = AlertPlan(tmp_path, webhook=webhook.url)
    first = book.evaluate("m", 2, accuracy(0.7), plan, now=1_796_000_000.25)
    assert len(first) == 1
    for value in (0.6, 0.75, 0.5):
        assert book.evaluate("m", 2, accuracy(value), plan) == []
    settle(book)

    (post,) = webhook.posts
    alert = first[0]
    assert post.path == "/hook"
    assert post.body == {
        "model": "m",
        "version": 2,
        "kind": "quality",
        "metric": "accuracy",
        "value": 0.7,
        "threshold": 0.8,
        "time": "2026-11-30T00:53:20.250Z",
        "id": alert.id,
    }
    assert datetime.fromisoformat(post.body["time"]).timestamp() == alert.raised
    (stored,) = store.alerts("m")
    assert (stored.delivery, stored.detail, stored.cleared) == ("delivered", "", None)
    assert book.active("m") == [stored]


def test_back_within_the_threshold_clears_and_a_new_crossing_alerts_again(
    store: EvaluationStore, book: AlertBook, webhook: Webhook, tmp_path: Path
) -> None:
    plan = AlertPlan(tmp_path, webhook=webhook.url)
    (first,) = book.evaluate("m", 1, accuracy(0.7), plan, now=100.0)
    assert book.evaluate("m", 1, [], plan, now=150.0) == []  # not computed: stays active
    assert book.evaluate("m", 1, accuracy(0.9), plan, now=200.0) == []
    assert book.active("m") == []
    (second,) = book.evaluate("m", 1, accuracy(0.6), plan, now=300.0)
    settle(book)

    assert second.id != first.id
    # Deliveries run side by side: the webhook may get them in either order.
    assert sorted(post.body["id"] for post in webhook.posts) == [first.id, second.id]
    latest, earlier = store.alerts("m")
    assert (earlier.id, earlier.cleared, earlier.value) == (first.id, 200.0, 0.7)
    assert (latest.id, latest.cleared, latest.value) == (second.id, None, 0.6)


def test_each_subject_and_version_alerts_on_its_own(
    store: EvaluationStore, book: AlertBook, tmp_path: Path
) -> None:
    plan = AlertPlan(tmp_path)
    drift = drift_readings(DriftSpec(), {"x": 0.5, "y": 0.01, "prediction": 0.3})
    raised = book.evaluate("m", 1, [*drift, *accuracy(0.1)], plan)
    assert [(a.kind, a.subject) for a in raised] == [
        ("drift", "x"),
        ("drift", "prediction"),
        ("quality", "accuracy"),
    ]
    assert [a.subject for a in book.evaluate("m", 2, drift, plan)] == ["x", "prediction"]
    assert book.evaluate("m", 1, drift, plan) == []
    # No webhook: nothing to deliver, and the store says so.
    assert {alert.delivery for alert in store.alerts("m")} == {"none"}


def test_a_raised_alert_logs_one_warning_and_calls_back(
    store: EvaluationStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[Alert] = []
    rolled_back: list[Alert] = []
    book = AlertBook(store, on_alert=seen.append, on_rollback=rolled_back.append)  # type: ignore[arg-type]
    caplog.set_level(logging.INFO, logger="serval.evaluation")
    try:
        for value in (0.7, 0.6, 0.65):
            book.evaluate("m", 3, accuracy(value), AlertPlan(tmp_path))
        book.evaluate("m", 3, accuracy(0.95), AlertPlan(tmp_path))
        book.evaluate("m", 4, accuracy(0.7), AlertPlan(tmp_path, roll_back=True))
    finally:
        book.close(grace_s=1.0)

    assert [(a.version, a.value) for a in seen] == [(3, 0.7), (4, 0.7)]
    assert rolled_back == seen[1:]  # only where the caller asked for a rollback
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [r.getMessage() for r in warnings] == [
        f"model m version 3: quality alert {seen[0].id}: accuracy 0.7 (min 0.8)",
        f"model m version 4: quality alert {seen[1].id}: accuracy 0.7 (min 0.8)",
    ]
    assert all(r.name == "serval.evaluation" for r in warnings)
    cleared = [r.getMessage() for r in caplog.records if "cleared" in r.getMessage()]
    assert cleared == ["model m version 3: quality alert cleared: accuracy 0.95 (min 0.8)"]


def test_a_failing_callback_leaves_the_other_actions_to_run(
    store: EvaluationStore, webhook: Webhook, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(alert: Alert) -> None:
        raise RuntimeError("metrics are down")

    book = AlertBook(store, on_alert=broken)  # type: ignore[arg-type]
    try:
        (alert,) = book.evaluate("m", 1, accuracy(0.2), AlertPlan(tmp_path, webhook=webhook.url))
        settle(book)
    finally:
        book.close(grace_s=1.0)
    assert [post.body["id"] for post in webhook.posts] == [alert.id]
    assert "on_alert failed for alert" in caplog.text


def test_two_books_on_one_store_raise_one_alert(
    store: EvaluationStore, webhook: Webhook, tmp_path: Path
) -> None:
    """Two replicas' books evaluate the same crossing at once: one alert, one POST."""
    books = [AlertBook(store) for _ in range(2)]  # type: ignore[arg-type]
    plan = AlertPlan(tmp_path, webhook=webhook.url)
    start = threading.Barrier(len(books))
    raised: list[list[Alert]] = [[] for _ in books]

    def evaluate(index: int) -> None:
        start.wait(WAIT_S)
        for _ in range(3):
            raised[index].extend(books[index].evaluate("m", 1, accuracy(0.5), plan))

    threads = [threading.Thread(target=evaluate, args=(i,)) for i in range(len(books))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT_S)
    for book in books:
        settle(book)
        book.close(grace_s=1.0)

    assert sum(len(alerts) for alerts in raised) == 1
    assert len(store.alerts("m")) == 1
    assert len(webhook.posts) == 1


def test_numpy_scores_are_sent_as_plain_numbers(
    store: EvaluationStore, book: AlertBook, webhook: Webhook, tmp_path: Path
) -> None:
    scores = {"x": np.float64(0.5), "prediction": np.float32(0.25)}
    raised = book.evaluate(
        "m", 1, drift_readings(DriftSpec(), scores), AlertPlan(tmp_path, webhook=webhook.url)
    )
    settle(book)
    assert sorted(post.body["value"] for post in webhook.posts) == [0.25, 0.5]
    assert all(type(alert.value) is float for alert in raised)


def test_a_plan_from_the_monitoring_spec(tmp_path: Path) -> None:
    spec = MonitoringSpec.model_validate(
        {
            "quality": {"metric": "accuracy", "min": 0.8},
            "alerts": {"webhook": "http://127.0.0.1:9/alerts"},
            "retrain": {"command": ["python", "retrain.py"], "cooldown_s": 60},
        }
    )
    plan = AlertPlan.of(spec, tmp_path, roll_back=True)
    assert plan.webhook == "http://127.0.0.1:9/alerts"
    assert plan.retrain is not None
    assert plan.retrain.command == ("python", "retrain.py")
    assert (plan.folder, plan.roll_back) == (tmp_path, True)
