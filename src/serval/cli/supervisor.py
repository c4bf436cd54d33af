"""``serval serve --workers N``: N server processes on the same ports, and a parent watching them.

Each worker is a whole server in a fresh interpreter (``python -m serval.cli.worker``, given
the settings on its standard input), loads every model itself and binds the REST and gRPC
ports with SO_REUSEPORT, so that the kernel spreads new connections among the workers. The
parent loads no model and serves nothing. It:

- forwards SIGTERM and SIGINT to every worker, each of which drains gracefully, and exits once
  all have exited (killing those still running ``drain_delay_s`` + ``exit_timeout_s`` +
  ``KILL_GRACE_S`` later);
- restarts a worker that exits on its own, after a delay that doubles from ``backoff_s`` up to
  ``max_backoff_s`` (back to ``backoff_s`` once a worker has run ``stable_s``);
- stops every worker and exits with its status when a worker cannot start (status 1 or 2
  within ``startup_s`` of its first start, e.g. a port held by another program), as a single
  process would.

A worker whose parent has died (SIGKILL) stops by itself (``cli.worker``).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import pickle
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import FrameType

from serval.config import Settings
from serval.core.lifecycle.manager import ControlMode

logger = logging.getLogger("serval.supervisor")

KILL_GRACE_S = 10.0  # beyond exit_timeout_s, for unloading models
_CANNOT_START = (1, 2)  # `serval serve`'s statuses for a server that could not start
_POLL_S = 1.0  # the longest the parent sleeps without looking at its workers


def worker_command(index: int) -> list[str]:
    """The command line of worker ``index``; it reads its settings from standard input."""
    return [sys.executable, "-m", "serval.cli.worker", str(index), str(os.getpid())]


@dataclass
class _Worker:
    index: int  # 1..N
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0  # time.monotonic()
    starts: int = 0
    failures: int = 0  # quick exits in a row, for the backoff
    restart_at: float | None = None


class Supervisor:
    """Runs ``settings.workers`` worker processes until a signal stops them. ``command``
    gives a worker's command line (tests replace it)."""

    def __init__(
        self,
        settings: Settings,
        *,
        command: Callable[[int], Sequence[str]] = worker_command,
        backoff_s: float = 1.0,
        max_backoff_s: float = 30.0,
        stable_s: float = 60.0,
        startup_s: float = 10.0,
        kill_grace_s: float = KILL_GRACE_S,
    ) -> None:
        self._settings = settings
        self._command = command
        self._backoff_s = backoff_s
        self._max_backoff_s = max_backoff_s
        self._stable_s = stable_s
        self._startup_s = startup_s
        self._kill_grace_s = kill_grace_s
        self._workers = [_Worker(index) for index in range(1, settings.workers + 1)]
        self._signals: list[int] = []
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._status = 0
        self._kill_at: float | None = None  # set once stopping

    @property
    def pids(self) -> list[int]:
        """The process ids of the running workers."""
        return [w.process.pid for w in self._workers if w.process is not None]

    def run(self) -> int:
        """Start the workers and supervise them; returns the exit status."""
        handled = (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD)
        previous = {sig: signal.signal(sig, self._on_signal) for sig in handled}
        try:
            logger.info("starting %d workers", len(self._workers))
            if self._settings.model_control_mode is ControlMode.EXPLICIT:
                logger.warning(
                    "model control mode explicit with several workers: a load or unload "
                    "through the API reaches one worker only (docs/workers.md)"
                )
            for worker in self._workers:
                self._start(worker)
            while self._supervise_once():
                pass
            logger.info("all workers stopped")
            return self._status
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self._wake_r.close()
            self._wake_w.close()

    # -- the loop -----------------------------------------------------------------------

    def _supervise_once(self) -> bool:
        """Wait for a signal (SIGCHLD: a worker exited) or a timer; act on it. False once
        every worker has stopped."""
        select.select([self._wake_r], [], [], self._timeout())
        with contextlib.suppress(BlockingIOError):
            while self._wake_r.recv(64):
                pass
        signals, self._signals = self._signals, []
        for sig in signals:
            if sig != signal.SIGCHLD:
                self._stop(sig, f"received {signal.Signals(sig).name}")
        now = time.monotonic()
        for worker in self._workers:
            if worker.process is not None and worker.process.poll() is not None:
                self._exited(worker, now)
        if self._kill_at is None:
            for worker in self._workers:
                if worker.restart_at is not None and now >= worker.restart_at:
                    self._start(worker)
            return True
        if all(w.process is None for w in self._workers):
            return False
        if now >= self._kill_at:
            self._kill_remaining()
        return True

    def _timeout(self) -> float:
        times = [w.restart_at for w in self._workers if w.restart_at is not None]
        if self._kill_at is not None:
            times = [self._kill_at]
        soonest = min(times, default=math.inf) - time.monotonic()
        return max(0.0, min(_POLL_S, soonest))

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._signals.append(signum)
        with contextlib.suppress(OSError):
            self._wake_w.send(b"\0")

    # -- workers ------------------------------------------------------------------------

    def _start(self, worker: _Worker) -> None:
        process = subprocess.Popen(self._command(worker.index), stdin=subprocess.PIPE)
        assert process.stdin is not None
        with contextlib.suppress(BrokenPipeError), process.stdin:
            process.stdin.write(pickle.dumps(self._settings))
        worker.process = process
        worker.started_at = time.monotonic()
        worker.starts += 1
        worker.restart_at = None
        logger.info("worker %d started (pid %d)", worker.index, process.pid)

    def _exited(self, worker: _Worker, now: float) -> None:
        process = worker.process
        assert process is not None
        status, pid = process.returncode, process.pid
        worker.process = None
        ran_s = now - worker.started_at
        if self._kill_at is not None:
            logger.info("worker %d (pid %s) stopped with status %s", worker.index, pid, status)
            return
        if worker.starts == 1 and status in _CANNOT_START and ran_s < self._startup_s:
            logger.error(
                "worker %d (pid %s) could not start (status %s); stopping",
                worker.index,
                pid,
                status,
            )
            self._status = status
            self._stop(signal.SIGTERM, "a worker could not start")
            return
        if ran_s >= self._stable_s:
            worker.failures = 0
        delay = min(self._max_backoff_s, self._backoff_s * 2**worker.failures)
        worker.failures += 1
        worker.restart_at = now + delay
        logger.error(
            "worker %d (pid %s) exited unexpectedly with status %s after %.1f s; restarting in "
            "%.0f s",
            worker.index,
            pid,
            status,
            ran_s,
            delay,
        )

    def _stop(self, sig: int, reason: str) -> None:
        """Forward ``sig`` to every worker; the first time, start stopping."""
        alive = [w.process for w in self._workers if w.process is not None]
        if self._kill_at is None:
            logger.info("%s: stopping the workers (%d running)", reason, len(alive))
            settings = self._settings
            self._kill_at = (
                time.monotonic()
                + settings.drain_delay_s
                + settings.exit_timeout_s
                + self._kill_grace_s
            )
            for worker in self._workers:
                worker.restart_at = None
        for process in alive:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(sig)

    def _kill_remaining(self) -> None:
        for worker in self._workers:
            process = worker.process
            if process is not None and process.poll() is None:
                logger.error(
                    "worker %d (pid %s) still runs after the exit timeout; killing it",
                    worker.index,
                    process.pid,
                )
                process.kill()
        self._kill_at = time.monotonic() + self._kill_grace_s


def supervise(settings: Settings) -> int:
    """Run ``settings.workers`` supervised server processes; the exit status."""
    return Supervisor(settings).run()
