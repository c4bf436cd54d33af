"""The serval.models log: a load that keeps failing for the same reason is said once."""

from __future__ import annotations

import logging

import pytest

from serval.core.events import StateChanged
from serval.core.lifecycle.states import ServableId, ServableState
from serval.observability.model_log import ModelStateLog

ID = ServableId("m", 1)
BAD_OPTIONS = "/repo/m/model.yaml: runtime_options: bogus: unknown key"


def attempt(log: ModelStateLog, error: str | None) -> None:
    log(StateChanged(ID, ServableState.LOADING))
    if error is None:
        log(StateChanged(ID, ServableState.AVAILABLE, duration_s=0.5))
    else:
        log(StateChanged(ID, ServableState.END, error=error))


def said(caplog: pytest.LogCaptureFixture) -> list[str]:
    messages = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    caplog.clear()
    return messages


def test_retries_of_the_same_failure_are_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="serval.models")
    log = ModelStateLog()
    attempt(log, BAD_OPTIONS)
    assert said(caplog) == [
        "model m version 1 loading",
        f"model m version 1 failed to load: {BAD_OPTIONS}",
    ]
    for _ in range(5):  # the manager's retries with backoff
        attempt(log, BAD_OPTIONS)
    assert said(caplog) == []
    attempt(log, "another reason")
    assert said(caplog) == ["model m version 1 failed to load: another reason"]
    attempt(log, None)
    assert said(caplog) == ["model m version 1 loaded in 0.50 s"]
    attempt(log, BAD_OPTIONS)  # broken again after it had loaded: said again
    assert len(said(caplog)) == 2


def test_unloading_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="serval.models")
    log = ModelStateLog()
    attempt(log, None)
    log(StateChanged(ID, ServableState.UNLOADING))
    log(StateChanged(ID, ServableState.END))
    assert said(caplog)[-1] == "model m version 1 unloaded"
