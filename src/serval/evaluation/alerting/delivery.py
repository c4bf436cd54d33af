"""The background worker that carries out what an alert sets off (webhook POSTs, retraining
commands) off the request path and off the evaluation (docs/alerts.md).

A few threads take jobs from a queue; a job retries on its own schedule (``Shutdown.pause``)
and records its outcome in the store. Threads, not asyncio tasks: the evaluation that raises
alerts already runs in a thread (``asyncio.to_thread``), and a blocking job (a POST with a
timeout, a subprocess) is simplest and most robust in a thread of its own.

``close(grace_s)`` lets the jobs finish within ``grace_s``: a retry that would start past it is
given up, and each job records what happened, so closing takes a bounded time.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from typing import Protocol

logger = logging.getLogger("serval.evaluation")
# A job past the shutdown deadline only records its outcome (a store write): this long is
# enough for that before close() stops waiting for the threads.
_RECORD_MARGIN_S = 2.0


class Shutdown:
    """Tells jobs whether the worker is closing and how long they have left."""

    def __init__(self) -> None:
        self._closing = threading.Event()
        self._deadline = math.inf  # time.monotonic() by which jobs must be done

    def begin(self, grace_s: float) -> None:
        self._deadline = time.monotonic() + max(grace_s, 0.0)
        self._closing.set()

    @property
    def closing(self) -> bool:
        return self._closing.is_set()

    def time_left(self) -> float:
        """Seconds until the deadline (infinite while the worker is not closing)."""
        return self._deadline - time.monotonic()

    def pause(self, delay_s: float) -> bool:
        """Wait ``delay_s`` (a retry's backoff); False at once when the worker closes and the
        wait would end past the deadline: the job gives up instead."""
        end = time.monotonic() + delay_s
        if not self._closing.wait(delay_s):
            return True
        if end > self._deadline:
            return False
        # Closing, but the retry still fits before the deadline: finish the wait.
        time.sleep(max(end - time.monotonic(), 0.0))
        return True


class Job(Protocol):
    def run(self, shutdown: Shutdown) -> None:
        """Do the work, retrying as it sees fit while ``shutdown`` leaves time, and record the
        outcome; never raises for an outcome (a failed POST is an outcome)."""
        ...


class DeliveryWorker:
    """Runs jobs on ``threads`` background threads, started with the first job."""

    def __init__(self, threads: int = 2, name: str = "serval-alerts") -> None:
        self._size = threads
        self._name = name
        self._jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._shutdown = Shutdown()
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._pending = 0  # jobs submitted and not finished
        self._closed = False

    def submit(self, job: Job) -> None:
        """Queue ``job``; after close it runs at once in the caller, where it finds no time
        left and records that it gave up."""
        with self._lock:
            closed = self._closed
            if not closed:
                if not self._threads:
                    self._start()
                self._pending += 1
                self._jobs.put(job)
        if closed:
            self._run(job)

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait until every submitted job has finished; False if some had not by
        ``timeout_s``."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout_s)

    def close(self, grace_s: float = 5.0) -> None:
        """Let the queued and running jobs finish within ``grace_s``, then give up the rest
        (each records it); returns in about ``grace_s`` at most."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            threads = list(self._threads)
        self._shutdown.begin(grace_s)
        for _ in threads:
            self._jobs.put(None)  # after the queued jobs: each thread ends when it takes one
        limit = time.monotonic() + grace_s + _RECORD_MARGIN_S
        for thread in threads:
            thread.join(max(limit - time.monotonic(), 0.0))
        stuck = sum(thread.is_alive() for thread in threads)
        if stuck:
            logger.warning("%d alert deliveries were still running at shutdown; left behind", stuck)

    def _start(self) -> None:
        for index in range(self._size):
            thread = threading.Thread(target=self._serve, name=f"{self._name}-{index}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def _serve(self) -> None:
        while (job := self._jobs.get()) is not None:
            try:
                self._run(job)
            finally:
                with self._idle:
                    self._pending -= 1
                    self._idle.notify_all()

    def _run(self, job: Job) -> None:
        try:
            job.run(self._shutdown)
        except Exception:
            # A bug in a job must not end the thread that the other deliveries need.
            logger.exception("an alert delivery failed unexpectedly")
