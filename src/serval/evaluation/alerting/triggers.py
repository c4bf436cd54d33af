"""Retraining triggers (``monitoring.retrain``): the alert's JSON POSTed to ``retrain.webhook``
and/or given on stdin to ``retrain.command``, run in the model's folder; the outcome kept as a
``Trigger`` (docs/alerts.md).

Whether a trigger runs at all is decided before, in the store (``claim_trigger``: at most one
per cooldown over all replicas); this is the job the worker runs once it is claimed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from serval.evaluation.alerting.delivery import Shutdown
from serval.evaluation.alerting.webhooks import WebhookPoster, alert_body
from serval.storage.evaluation import Alert, EvaluationStore, StoreUnavailableError, Trigger

logger = logging.getLogger("serval.evaluation")
# How often a running command is checked against its timeout and the shutdown deadline.
_POLL_S = 0.25
_TAIL_BYTES = 512  # of the command's output, for the last line in a failure's reason


@dataclass(frozen=True, slots=True)
class RetrainRun:
    """The job of one claimed trigger: the webhook first (with its retries), then the
    command, then the outcome recorded with ``at``, the time the trigger was claimed."""

    alert: Alert
    at: float
    webhook: str | None
    command: tuple[str, ...] | None
    folder: Path
    command_timeout_s: float
    poster: WebhookPoster
    store: EvaluationStore

    @property
    def action(self) -> str:
        return "+".join(
            name
            for name, set_ in (("webhook", self.webhook), ("command", self.command))
            if set_ is not None
        )

    def run(self, shutdown: Shutdown) -> None:
        alert = self.alert
        body = alert_body(alert)
        failures: list[str] = []
        if self.webhook is not None:
            failure = self.poster.post(self.webhook, body, shutdown)
            if failure is not None:
                failures.append(f"webhook: {failure}")
        if self.command is not None:
            failure = run_command(self.command, self.folder, body, self.command_timeout_s, shutdown)
            if failure is not None:
                failures.append(failure)
        outcome = "; ".join(failures) or "ok"
        level = logging.WARNING if failures else logging.INFO
        logger.log(
            level,
            "model %s: retraining triggered by alert %s (version %d, %s %s): %s: %s",
            alert.model,
            alert.id,
            alert.version,
            alert.kind,
            alert.subject,
            self.action,
            outcome,
            extra={"model": alert.model, "version": alert.version, "alert_id": alert.id},
        )
        trigger = Trigger(
            model=alert.model,
            version=alert.version,
            alert_id=alert.id,
            at=self.at,
            action=self.action,
            outcome=outcome,
        )
        try:
            self.store.record_trigger(trigger)
        except StoreUnavailableError as exc:
            logger.warning(
                "model %s: the retraining trigger could not be recorded: the store is "
                "unavailable (%s)",
                alert.model,
                exc,
            )


def run_command(
    command: Sequence[str], folder: Path, stdin: bytes, timeout_s: float, shutdown: Shutdown
) -> str | None:
    """Run ``command`` (no shell) in ``folder`` with ``stdin`` as its input: None when it
    exits 0, else why not. Stopped (with the processes it started) past ``timeout_s`` or
    the shutdown deadline."""
    program = command[0]
    if shutdown.closing:
        # It would be stopped within seconds: better not started than cut off halfway.
        return "command not run: the server was shutting down"
    if not folder.is_dir():
        return f"command not run: the model's folder {folder} does not exist"
    with tempfile.TemporaryFile() as output:
        try:
            # A session of its own: stopping it stops whatever it started too.
            process = subprocess.Popen(
                list(command),
                cwd=folder,
                stdin=subprocess.PIPE,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except FileNotFoundError:
            return f"command not found: {program}"
        except PermissionError:
            return f"command not executable: {program}"
        except OSError as exc:
            return f"command {program} cannot start: {exc.strerror}"
        _feed(process, stdin)
        stopped = _wait(process, timeout_s, shutdown)
        if stopped is not None:
            return f"command {stopped}"
        status = process.returncode
        if status == 0:
            return None
        ended = f"exited {status}" if status > 0 else f"killed by signal {-status}"
        last_line = _last_line(output)
        return f"command {ended}" + (f": {last_line}" if last_line else "")


def _feed(process: subprocess.Popen[bytes], stdin: bytes) -> None:
    # The alert's JSON is far smaller than a pipe's buffer: writing never waits on the reader.
    assert process.stdin is not None
    with contextlib.suppress(BrokenPipeError):  # a command that ignores its input
        process.stdin.write(stdin)
    with contextlib.suppress(BrokenPipeError):
        process.stdin.close()


def _wait(process: subprocess.Popen[bytes], timeout_s: float, shutdown: Shutdown) -> str | None:
    """Wait for the command to end: None when it did, else why it was stopped."""
    end = time.monotonic() + timeout_s
    while True:
        left = min(end - time.monotonic(), shutdown.time_left())
        if left <= 0:
            _stop(process)
            if shutdown.time_left() <= 0:
                return "stopped at shutdown"
            return f"timed out after {timeout_s:g} s"
        try:
            process.wait(min(left, _POLL_S))
        except subprocess.TimeoutExpired:
            continue
        return None


def _stop(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def _last_line(output: IO[bytes]) -> str:
    """The last non-empty line the command wrote (stdout and stderr), for its failure."""
    size = output.seek(0, os.SEEK_END)
    output.seek(max(size - _TAIL_BYTES, 0))
    lines = output.read().decode("utf-8", "replace").strip().splitlines()
    return lines[-1].strip() if lines else ""
