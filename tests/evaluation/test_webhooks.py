"""Alert webhooks: delivered off the caller, retried with exponential backoff, recorded as
delivered or failed with the reason; close() finishes or gives up within its grace."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from serval.core.specs.monitoring import QualitySpec
from serval.evaluation.alerting.alerts import AlertBook, AlertPlan, Reading, quality_reading
from serval.evaluation.alerting.webhooks import RetryPolicy, iso_utc, shown_url
from serval.storage.evaluation import EvaluationStore
from tests.evaluation.alert_kit import WAIT_S, Webhook, closed_port_url

FAST = RetryPolicy(tries=5, first_delay_s=0.02, try_timeout_s=5.0)


def low_accuracy() -> list[Reading]:
    reading = quality_reading(QualitySpec(metric="accuracy", min=0.8), 0.5)
    assert reading is not None
    return [reading]


def book_with(store: EvaluationStore, retry: RetryPolicy) -> AlertBook:
    return AlertBook(store, retry=retry)


@pytest.fixture
def failing() -> Iterator[Webhook]:
    with Webhook(statuses=(500,)) as receiver:
        yield receiver


def test_the_backoff_doubles_from_the_first_delay() -> None:
    assert RetryPolicy().delays() == [0.5, 1.0, 2.0, 4.0]
    assert RetryPolicy(tries=3, first_delay_s=0.1).delays() == [0.1, 0.2]
    assert RetryPolicy(tries=1).delays() == []


def test_a_failing_webhook_is_retried_with_backoff_then_recorded_failed(
    store: EvaluationStore, failing: Webhook, tmp_path: Path
) -> None:
    book = book_with(store, FAST)
    failing.release.clear()  # the webhook holds its first answer until the caller is back
    try:
        (alert,) = book.evaluate("m", 1, low_accuracy(), AlertPlan(tmp_path, failing.url))
        # The caller is back while the first try still waits for its answer.
        assert failing.wait_for_posts(1)
        assert store.alerts("m")[0].delivery == "pending"
        failing.release.set()
        assert book.wait_idle(WAIT_S)
    finally:
        book.close(grace_s=1.0)

    posts = failing.posts
    assert [post.body["id"] for post in posts] == [alert.id] * 5
    gaps = [later.at - earlier.at for earlier, later in itertools.pairwise(posts)]
    # Each retry waits at least its backoff (a lower bound: the clock only adds to it).
    assert all(gap >= delay for gap, delay in zip(gaps, FAST.delays(), strict=True))
    (stored,) = store.alerts("m")
    assert (stored.delivery, stored.detail) == ("failed", "HTTP 500 after 5 tries")


def test_a_webhook_that_recovers_within_the_tries_is_delivered(
    store: EvaluationStore, tmp_path: Path
) -> None:
    book = book_with(store, FAST)
    with Webhook(statuses=(503, 500, 204)) as flaky:
        try:
            book.evaluate("m", 1, low_accuracy(), AlertPlan(tmp_path, flaky.url))
            assert book.wait_idle(WAIT_S)
        finally:
            book.close(grace_s=1.0)
        assert len(flaky.posts) == 3
    assert (store.alerts("m")[0].delivery, store.alerts("m")[0].detail) == ("delivered", "")


def test_an_unreachable_webhook_fails_with_the_reason(
    store: EvaluationStore, tmp_path: Path
) -> None:
    book = book_with(store, RetryPolicy(tries=2, first_delay_s=0.01, try_timeout_s=5.0))
    try:
        book.evaluate("m", 1, low_accuracy(), AlertPlan(tmp_path, closed_port_url()))
        assert book.wait_idle(WAIT_S)
    finally:
        book.close(grace_s=1.0)
    (stored,) = store.alerts("m")
    assert stored.delivery == "failed"
    assert stored.detail.startswith("cannot connect (")
    assert stored.detail.endswith(") after 2 tries")


def test_a_webhook_that_does_not_answer_times_out_each_try(
    store: EvaluationStore, failing: Webhook, tmp_path: Path
) -> None:
    book = book_with(store, RetryPolicy(tries=2, first_delay_s=0.01, try_timeout_s=0.2))
    failing.release.clear()  # never answers while the tries last
    try:
        book.evaluate("m", 1, low_accuracy(), AlertPlan(tmp_path, failing.url))
        assert book.wait_idle(WAIT_S)
    finally:
        failing.release.set()
        book.close(grace_s=1.0)
    (stored,) = store.alerts("m")
    assert (stored.delivery, stored.detail) == ("failed", "no answer within 0.2 s after 2 tries")


def test_close_gives_up_a_delivery_waiting_to_retry_and_records_it(
    store: EvaluationStore, failing: Webhook, tmp_path: Path
) -> None:
    # A backoff far longer than the grace: close() must not wait for it.
    book = book_with(store, RetryPolicy(tries=5, first_delay_s=600.0, try_timeout_s=5.0))
    book.evaluate("m", 1, low_accuracy(), AlertPlan(tmp_path, failing.url))
    failing.wait_for_posts(1)
    book.close(grace_s=0.5)
    assert book.wait_idle(0.0)  # nothing left running: close() returned after the record
    (stored,) = store.alerts("m")
    assert stored.delivery == "failed"
    assert stored.detail == "HTTP 500 after 1 try, then gave up at shutdown"
    assert len(failing.posts) == 1


def test_an_alert_raised_after_close_is_given_up_at_once(
    store: EvaluationStore, failing: Webhook, tmp_path: Path
) -> None:
    book = book_with(store, FAST)
    book.close(grace_s=0.0)
    book.evaluate("m", 1, low_accuracy(), AlertPlan(tmp_path, failing.url))
    (stored,) = store.alerts("m")
    assert (stored.delivery, stored.detail) == ("failed", "not tried: the server was shutting down")
    assert failing.posts == []


def test_logs_show_webhooks_without_credentials_or_query() -> None:
    assert shown_url("https://user:secret@hooks.example.com:8443/a/b?token=x") == (
        "https://hooks.example.com:8443/a/b"
    )
    assert shown_url("http://127.0.0.1/hook") == "http://127.0.0.1/hook"


def test_alert_times_are_iso_8601_utc() -> None:
    assert iso_utc(0.0) == "1970-01-01T00:00:00.000Z"
    assert iso_utc(1_796_000_000.25) == "2026-11-30T00:53:20.250Z"
