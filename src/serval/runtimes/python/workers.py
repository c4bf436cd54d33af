"""Worker processes for ``isolation: process``: each loads its own copy of the model.

A slow or GIL-bound model then cannot stall the server, and a crash costs only the requests
running in that worker: they fail with ``ModelExecutionError`` naming the model, and the
worker restarts in the background. Workers are started with the ``spawn`` method (no state is
inherited from the threaded server) and talk to the server over a pipe, one request at a time.
"""

from __future__ import annotations

import logging
import queue
import signal
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from multiprocessing import get_context
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from serval.core.errors import (
    DeadlineExceededError,
    InvalidInputError,
    ModelExecutionError,
    ModelLoadError,
    ModelNotReadyError,
    ServalError,
)
from serval.core.types import Tensor
from serval.runtimes.python.runner import ModelDescription, ModelRunner

logger = logging.getLogger(__name__)

_RESTART_BACKOFF_S = (1.0, 2.0, 5.0, 10.0, 30.0)


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    label: str  # "model 'x' version 1"
    folder: Path
    parameters: Mapping[str, Any]
    workers: int = 1
    start_timeout_s: float = 120.0
    call_timeout_s: float | None = None


@dataclass(eq=False)
class _Worker:
    process: BaseProcess
    conn: Connection
    description: ModelDescription | None = field(default=None)


class WorkerPool:
    """``run`` takes an idle worker (waiting for one if all are busy), sends it the call and
    waits for the reply; thread-safe."""

    def __init__(self, config: WorkerConfig) -> None:
        self._config = config
        self._context = get_context("spawn")
        self._idle: queue.Queue[_Worker] = queue.Queue()
        self._workers: set[_Worker] = set()
        self._lock = threading.Lock()
        self._closed = threading.Event()

    def start(self) -> ModelDescription:
        """Start every worker and wait until each has loaded the model."""
        started = [self._spawn() for _ in range(self._config.workers)]
        try:
            descriptions = [self._await_ready(worker) for worker in started]
        except BaseException:
            self.close()
            raise
        for worker in started:
            self._idle.put(worker)
        return descriptions[0]

    def run(
        self, inputs: Sequence[Tensor], signature: str, wanted: Sequence[str] | None
    ) -> list[Tensor]:
        worker = self._take()
        message = (list(inputs), signature, None if wanted is None else list(wanted))
        try:
            worker.conn.send(message)
            timeout = self._config.call_timeout_s
            answered = timeout is None or worker.conn.poll(timeout)
            reply = worker.conn.recv() if answered else None
        except (EOFError, OSError) as exc:
            raise self._crashed(worker) from exc
        except BaseException:
            self._idle.put(worker)  # e.g. the call could not be pickled: nothing was sent
            raise
        if reply is None:
            pid = worker.process.pid
            self._replace(worker, wait_s=0)
            raise DeadlineExceededError(
                f"{self._config.label} did not answer within {timeout:g} s "
                f"(runtime_options.timeout_s); its worker process (pid {pid}) is being restarted"
            )
        self._idle.put(worker)
        status, payload = reply
        if status == "ok":
            tensors: list[Tensor] = payload
            return tensors
        if status == "invalid":
            raise InvalidInputError(payload)
        raise ModelExecutionError(f"{self._config.label} failed: {payload}")

    def _crashed(self, worker: _Worker) -> ModelExecutionError:
        pid = worker.process.pid
        code = self._replace(worker)
        return ModelExecutionError(
            f"{self._config.label}: its worker process (pid {pid}) {_how_it_ended(code)} while "
            f"predicting; the worker is being restarted"
        )

    def close(self) -> None:
        self._closed.set()
        with self._lock:
            workers = list(self._workers)
            self._workers.clear()
        for worker in workers:
            _stop(worker)

    # -- starting and replacing workers ---------------------------------------------------

    def _spawn(self) -> _Worker:
        parent, child = self._context.Pipe()
        config = self._config
        process = self._context.Process(
            target=worker_main,
            args=(child, str(config.folder), dict(config.parameters), config.label),
            name=f"serval-worker {config.label}",
            daemon=True,
        )
        process.start()
        child.close()  # the worker holds its end; EOF here then means the worker is gone
        worker = _Worker(process, parent)
        with self._lock:
            self._workers.add(worker)
        return worker

    def _await_ready(self, worker: _Worker) -> ModelDescription:
        label, timeout = self._config.label, self._config.start_timeout_s
        try:
            if not worker.conn.poll(timeout):
                raise ModelLoadError(f"{label}: a worker process did not load within {timeout:g} s")
            status, payload = worker.conn.recv()
        except (EOFError, OSError) as exc:
            worker.process.join(timeout=5)
            raise ModelLoadError(
                f"{label}: a worker process {_how_it_ended(worker.process.exitcode)} while loading"
            ) from exc
        if status != "ready":
            raise ModelLoadError(str(payload))
        worker.description = payload
        return worker.description

    def _take(self) -> _Worker:
        wait_s = self._config.start_timeout_s
        while True:
            try:
                worker = self._idle.get(timeout=wait_s)
            except queue.Empty:
                raise ModelNotReadyError(
                    f"{self._config.label}: no worker process became free within {wait_s:g} s",
                    retry_after_s=1.0,
                ) from None
            if worker.process.is_alive():
                return worker
            self._replace(worker)  # died while idle

    def _replace(self, worker: _Worker, wait_s: float = 1.0) -> int | None:
        """Stop ``worker`` (a crashed one has ``wait_s`` to finish exiting) and start a
        replacement in the background; returns the exit code."""
        with self._lock:
            self._workers.discard(worker)
        code = _stop(worker, wait_s)
        if not self._closed.is_set():
            threading.Thread(
                target=self._restart, name=f"serval-restart {self._config.label}", daemon=True
            ).start()
        return code

    def _restart(self) -> None:
        attempt = 0
        while not self._closed.is_set():
            worker = None
            try:
                worker = self._spawn()
                self._await_ready(worker)
            except Exception:
                if worker is not None:
                    with self._lock:
                        self._workers.discard(worker)
                    _stop(worker)
                if self._closed.is_set():
                    return
                logger.exception("%s: restarting a worker process failed", self._config.label)
                attempt += 1
                delay = _RESTART_BACKOFF_S[min(attempt, len(_RESTART_BACKOFF_S)) - 1]
                self._closed.wait(delay)
                continue
            if self._closed.is_set():
                _stop(worker)
                return
            logger.info(
                "%s: worker process restarted (pid %s)", self._config.label, worker.process.pid
            )
            self._idle.put(worker)
            return


def _how_it_ended(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


def _stop(worker: _Worker, wait_s: float = 2.0) -> int | None:
    """Close the pipe (a healthy worker then exits), wait ``wait_s``, then kill it: a
    worker holds nothing that needs cleaning up."""
    worker.conn.close()
    worker.process.join(timeout=wait_s)
    if worker.process.is_alive():
        worker.process.kill()
        worker.process.join()
    return worker.process.exitcode


# -- inside the worker process ------------------------------------------------------------


def worker_main(conn: Connection, folder: str, parameters: dict[str, Any], label: str) -> None:
    """The worker's whole life: load, answer ``ready``, then serve calls until EOF."""
    # The server decides when workers stop (by closing the pipe, after draining requests):
    # a Ctrl-C or a SIGTERM sent to the whole process group must not cut them short.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        runner = ModelRunner.load(Path(folder), parameters, label)
    except Exception as exc:
        reason = exc.message if isinstance(exc, ServalError) else f"{type(exc).__name__}: {exc}"
        conn.send(("failed", f"{label}: {reason}"))
        return
    conn.send(("ready", runner.description))
    try:
        while True:
            try:
                inputs, signature, wanted = conn.recv()
            except (EOFError, OSError):
                return
            conn.send(_answer(runner, label, inputs, signature, wanted))
    finally:
        runner.close()


def _answer(
    runner: ModelRunner,
    label: str,
    inputs: list[Tensor],
    signature: str,
    wanted: list[str] | None,
) -> tuple[str, Any]:
    try:
        return "ok", runner.run(inputs, signature, wanted)
    except InvalidInputError as exc:
        return "invalid", exc.message
    except ServalError as exc:
        return "error", exc.message
    except Exception as exc:
        logger.exception("%s: prediction failed", label)
        return "error", f"{type(exc).__name__}: {exc}"
