"""Retraining triggers: at most one per cooldown (the store claims it), the alert's JSON on the
command's stdin in the model's folder and/or POSTed to the retrain webhook, the outcome kept."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest

from serval.core.specs.monitoring import QualitySpec, RetrainSpec
from serval.evaluation.alerting.alerts import AlertBook, AlertPlan, Reading, quality_reading
from serval.evaluation.alerting.webhooks import RetryPolicy, alert_document
from serval.storage.evaluation import EvaluationStore
from tests.evaluation.alert_kit import (
    WAIT_S,
    Webhook,
    model_folder,
    recorded_calls,
    wait_until,
)

RETRAIN = (sys.executable, "retrain.py")


def accuracy(value: float) -> list[Reading]:
    reading = quality_reading(QualitySpec(metric="accuracy", min=0.8), value)
    assert reading is not None
    return [reading]


def run_alerts(
    store: EvaluationStore,
    plan: AlertPlan,
    values: list[float],
    command_timeout_s: float = 60.0,
) -> None:
    """Evaluate version 1 once per value (one second apart), then wait for the triggers."""
    book = AlertBook(  # type: ignore[arg-type]  # the alert and trigger methods only
        store, retry=RetryPolicy(tries=2, first_delay_s=0.01), command_timeout_s=command_timeout_s
    )
    try:
        for second, value in enumerate(values):
            book.evaluate("m", 1, accuracy(value), plan, now=1000.0 + second)
        assert book.wait_idle(WAIT_S)
    finally:
        book.close(grace_s=1.0)


def test_a_retrain_command_runs_once_within_its_cooldown(
    store: EvaluationStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = model_folder(tmp_path)
    plan = AlertPlan(folder, retrain=RetrainSpec(command=RETRAIN, cooldown_s=3600))
    caplog.set_level(logging.INFO, logger="serval.evaluation")
    # Alert, cleared, alert again: the second alert is within the cooldown.
    run_alerts(store, plan, [0.5, 0.9, 0.4])

    first = store.alerts("m")[-1]
    assert len(store.alerts("m")) == 2
    (call,) = recorded_calls(folder)  # written in the model's folder: the command's cwd
    assert call == alert_document(first)  # the alert's JSON on its stdin
    (trigger,) = store.triggers("m")
    assert (trigger.alert_id, trigger.version, trigger.at) == (first.id, 1, 1000.0)
    assert (trigger.action, trigger.outcome) == ("command", "ok")
    assert "triggers no retraining: one ran within the cooldown (3600 s)" in caplog.text
    assert f"retraining triggered by alert {first.id}" in caplog.text


def test_with_no_cooldown_each_alert_triggers(store: EvaluationStore, tmp_path: Path) -> None:
    folder = model_folder(tmp_path)
    plan = AlertPlan(folder, retrain=RetrainSpec(command=RETRAIN, cooldown_s=0))
    run_alerts(store, plan, [0.5, 0.9, 0.4])

    newest, oldest = store.alerts("m")
    calls = recorded_calls(folder)
    assert sorted(call["id"] for call in calls) == [oldest.id, newest.id]
    assert sorted(t.alert_id or 0 for t in store.triggers("m")) == [oldest.id, newest.id]


def test_one_evaluation_raising_several_alerts_triggers_once(
    store: EvaluationStore, tmp_path: Path
) -> None:
    folder = model_folder(tmp_path)
    plan = AlertPlan(folder, retrain=RetrainSpec(command=RETRAIN, cooldown_s=0))
    book = AlertBook(store)  # type: ignore[arg-type]
    try:
        drifted = [Reading("drift", name, 0.9, 0.2, "threshold") for name in ("x", "y", "z")]
        assert len(book.evaluate("m", 1, drifted, plan)) == 3
        assert book.wait_idle(WAIT_S)
    finally:
        book.close(grace_s=1.0)
    (call,) = recorded_calls(folder)
    assert call["metric"] == "x"


def test_the_retrain_webhook_and_command_both_get_the_alert(
    store: EvaluationStore, tmp_path: Path
) -> None:
    folder = model_folder(tmp_path)
    with Webhook() as hook:
        retrain = RetrainSpec(webhook=hook.url, command=RETRAIN, cooldown_s=0)
        run_alerts(store, AlertPlan(folder, retrain=retrain), [0.5])
        (post,) = hook.posts
    (alert,) = store.alerts("m")
    assert post.body == alert_document(alert) == recorded_calls(folder)[0]
    (trigger,) = store.triggers("m")
    assert (trigger.action, trigger.outcome) == ("webhook+command", "ok")
    assert alert.delivery == "none"  # no alerts.webhook: the retrain webhook is the trigger's


def test_failures_of_the_webhook_and_command_are_the_outcome(
    store: EvaluationStore, tmp_path: Path
) -> None:
    folder = model_folder(tmp_path, "import sys\nprint('progress')\nsys.exit('no training data')\n")
    with Webhook(statuses=(500,)) as hook:
        retrain = RetrainSpec(webhook=hook.url, command=RETRAIN, cooldown_s=0)
        run_alerts(store, AlertPlan(folder, retrain=retrain), [0.5])
    (trigger,) = store.triggers("m")
    assert trigger.outcome == "webhook: HTTP 500 after 2 tries; command exited 1: no training data"


@pytest.mark.parametrize(
    ("command", "outcome"),
    [
        (("no-such-retrain-program",), "command not found: no-such-retrain-program"),
        (
            (sys.executable, "-c", "import os; os.kill(os.getpid(), 9)"),
            "command killed by signal 9",
        ),
    ],
)
def test_a_command_that_cannot_run_or_dies_says_so(
    store: EvaluationStore, tmp_path: Path, command: tuple[str, ...], outcome: str
) -> None:
    plan = AlertPlan(model_folder(tmp_path), retrain=RetrainSpec(command=command, cooldown_s=0))
    run_alerts(store, plan, [0.5])
    assert store.triggers("m")[0].outcome == outcome


def test_a_command_past_its_timeout_is_stopped(store: EvaluationStore, tmp_path: Path) -> None:
    # A child that would sleep long: stopped at its timeout, it and its own children.
    hang = (sys.executable, "-c", "import time; time.sleep(600)")
    plan = AlertPlan(model_folder(tmp_path), retrain=RetrainSpec(command=hang, cooldown_s=0))
    run_alerts(store, plan, [0.5], command_timeout_s=0.3)
    assert store.triggers("m")[0].outcome == "command timed out after 0.3 s"


def test_close_stops_a_running_command_and_records_it(
    store: EvaluationStore, tmp_path: Path
) -> None:
    folder = model_folder(tmp_path)
    started = folder / "started"
    script = f"import pathlib, time\npathlib.Path({str(started)!r}).touch()\ntime.sleep(600)\n"
    (folder / "retrain.py").write_text(script)
    plan = AlertPlan(folder, retrain=RetrainSpec(command=RETRAIN, cooldown_s=0))
    book = AlertBook(store)  # type: ignore[arg-type]
    book.evaluate("m", 1, accuracy(0.5), plan)
    wait_until(started.exists, "the retraining command to start")
    book.close(grace_s=0.5)
    (trigger,) = store.triggers("m")
    assert trigger.outcome == "command stopped at shutdown"


def test_no_command_starts_once_the_book_is_closing(store: EvaluationStore, tmp_path: Path) -> None:
    folder = model_folder(tmp_path)
    book = AlertBook(store)  # type: ignore[arg-type]
    book.close(grace_s=0.0)
    plan = AlertPlan(folder, retrain=RetrainSpec(command=RETRAIN, cooldown_s=0))
    book.evaluate("m", 1, accuracy(0.5), plan)
    assert store.triggers("m")[0].outcome == "command not run: the server was shutting down"
    assert recorded_calls(folder) == []
