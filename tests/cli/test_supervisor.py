"""The worker supervisor of ``serval serve --workers N``, with fake workers (small Python
scripts) in place of servers: signals forwarded, a crashed worker restarted, a worker that
cannot start stops them all, a worker that ignores SIGTERM is killed."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from serval.cli.supervisor import Supervisor
from serval.config import Settings

# argv: index, folder, behaviour. Reads the pickled settings as a worker does (without loading
# them: starting in milliseconds), notes each start in <folder>/<index>.starts and a graceful
# stop in <folder>/<index>.stopped.
FAKE_WORKER = r"""
import os, signal, sys, time
index, folder, behaviour = sys.argv[1], sys.argv[2], sys.argv[3]

def stop(sig, frame):
    with open(os.path.join(folder, index + ".stopped"), "a") as f:
        f.write(f"{sig}\n")
    sys.exit(0)

stubborn = behaviour == "stubborn" and index == "1"
signal.signal(signal.SIGTERM, signal.SIG_IGN if stubborn else stop)  # before it says it started
assert sys.stdin.buffer.read().startswith(b"\x80")  # the pickled settings (read, not loaded)
starts = os.path.join(folder, index + ".starts")
with open(starts, "a") as f:
    f.write(f"{os.getpid()}\n")
with open(starts) as f:
    count = len(f.readlines())
if behaviour == "crash-first" and index == "1" and count == 1:
    sys.exit(3)
if behaviour == "cannot-start" and index == "2":
    sys.exit(1)
while True:
    time.sleep(0.02)
"""


def fake(folder: Path, behaviour: str) -> Callable[[int], list[str]]:
    return lambda index: [sys.executable, "-c", FAKE_WORKER, str(index), str(folder), behaviour]


def starts(folder: Path, index: int) -> list[int]:
    path = folder / f"{index}.starts"
    return [int(line) for line in path.read_text().split()] if path.exists() else []


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        model_repository=tmp_path,
        workers=2,
        http_port=18000,
        exit_timeout_s=0.2,
        drain_delay_s=0,  # also inside a Kubernetes pod, where the default is 5 s
    )


@pytest.fixture
def stop_when() -> Iterator[Callable[[Callable[[], bool]], None]]:
    """Send this process SIGTERM (which the supervisor handles) once ``condition`` holds."""
    threads: list[threading.Thread] = []

    def arm(condition: Callable[[], bool]) -> None:
        def watch() -> None:
            deadline = time.monotonic() + 30
            while not condition() and time.monotonic() < deadline:
                time.sleep(0.02)
            os.kill(os.getpid(), signal.SIGTERM)

        thread = threading.Thread(target=watch, daemon=True)
        thread.start()
        threads.append(thread)

    yield arm
    for thread in threads:
        thread.join(5)


def test_sigterm_is_forwarded_and_every_worker_stops(
    tmp_path: Path, settings: Settings, stop_when: Callable[[Callable[[], bool]], None]
) -> None:
    supervisor = Supervisor(settings, command=fake(tmp_path, "plain"))
    stop_when(lambda: bool(starts(tmp_path, 1) and starts(tmp_path, 2)))
    assert supervisor.run() == 0
    for index in (1, 2):
        assert len(starts(tmp_path, index)) == 1
        assert (tmp_path / f"{index}.stopped").read_text().split() == [str(signal.SIGTERM)]
    assert supervisor.pids == []


def test_a_worker_that_exits_is_restarted(
    tmp_path: Path, settings: Settings, stop_when: Callable[[Callable[[], bool]], None]
) -> None:
    supervisor = Supervisor(settings, command=fake(tmp_path, "crash-first"), backoff_s=0.05)
    stop_when(lambda: len(starts(tmp_path, 1)) == 2 and bool(starts(tmp_path, 2)))
    assert supervisor.run() == 0
    first, second = starts(tmp_path, 1)
    assert first != second
    assert len(starts(tmp_path, 2)) == 1  # the other worker went on
    assert (tmp_path / "1.stopped").exists()


def test_a_worker_that_cannot_start_stops_them_all(tmp_path: Path, settings: Settings) -> None:
    supervisor = Supervisor(settings, command=fake(tmp_path, "cannot-start"), backoff_s=0.05)
    assert supervisor.run() == 1
    assert len(starts(tmp_path, 2)) == 1  # not restarted
    assert supervisor.pids == []


def test_a_worker_that_ignores_sigterm_is_killed(
    tmp_path: Path, settings: Settings, stop_when: Callable[[Callable[[], bool]], None]
) -> None:
    supervisor = Supervisor(settings, command=fake(tmp_path, "stubborn"), kill_grace_s=0.2)
    stop_when(lambda: bool(starts(tmp_path, 1) and starts(tmp_path, 2)))
    started = time.monotonic()
    assert supervisor.run() == 0
    assert time.monotonic() - started < 10
    assert not (tmp_path / "1.stopped").exists()
    assert (tmp_path / "2.stopped").exists()


def test_the_kill_waits_for_the_drain_delay_too(
    tmp_path: Path, settings: Settings, stop_when: Callable[[Callable[[], bool]], None]
) -> None:
    draining = settings.model_copy(update={"drain_delay_s": 0.6})
    supervisor = Supervisor(draining, command=fake(tmp_path, "stubborn"), kill_grace_s=0.2)
    stop_when(lambda: bool(starts(tmp_path, 1) and starts(tmp_path, 2)))
    started = time.monotonic()
    assert supervisor.run() == 0
    # The stubborn worker was killed no sooner than delay + exit timeout + grace after the
    # SIGTERM, which came after the start.
    assert not (tmp_path / "1.stopped").exists()
    assert time.monotonic() - started >= 0.6 + 0.2 + 0.2


def test_workers_need_a_fixed_port(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot be shared by several workers"):
        Settings(model_repository=tmp_path, workers=2, http_port=0)
    assert Settings(model_repository=tmp_path).workers == 1
