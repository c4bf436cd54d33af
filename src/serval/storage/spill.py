"""Records kept on local disk while the evaluation store is unreachable, replayed once it is
back (docs/storage.md#spill-files).

Files: ``<folder>/<name>.<time_ns>.<pid>.spill``, JSON lines (orjson), one record a line,
appended and fsync'ed a batch at a time (ground truth is on disk before the API answers). The
pid in the name keeps processes off each other's files. While a process appends to a file it
holds an exclusive ``flock`` on it; a file is created under another name, locked, then renamed
into place, so no replayer ever sees an unlocked file that is still being written.

Replay claims a file by locking it (a file locked by its writer or another replayer is left
alone), writes its records to the store in order, a batch at a time, and after each batch
records how many are written in ``<file>.done`` (written and renamed into place). The spill
file goes once all are written, then its ``.done``. So a replay interrupted by the store (a
batch it did not take is not counted) or by a crash goes on where it stopped; only a crash
between the store's commit and the ``.done`` rename writes that one batch twice.
"""

from __future__ import annotations

import base64
import fcntl
import logging
import os
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson

from serval.storage.evaluation import EvaluationStore, GroundTruth, LoggedPrediction

logger = logging.getLogger(__name__)

SpilledRecord = LoggedPrediction | GroundTruth


class SpillFile:
    """The spilled records called ``name`` in ``folder`` (made on first append)."""

    def __init__(self, folder: Path, name: str) -> None:
        self._folder = folder
        self._name = name
        self._lock = threading.Lock()
        self._fd: int | None = None  # the file this process appends to, locked

    def append(self, records: Sequence[SpilledRecord]) -> None:
        """Add ``records`` at the end, on disk when this returns (OSError: not kept)."""
        if not records:
            return
        data = b"".join(orjson.dumps(_encode(record)) + b"\n" for record in records)
        with self._lock:
            if self._fd is None:
                self._fd = self._create()
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view) :]
            os.fsync(self._fd)

    def pending(self) -> int:
        """Records waiting in every file of this name (this process's and others')."""
        total = 0
        for path in self._files():
            try:
                total += max(0, _count_lines(path) - _done(path))
            except FileNotFoundError:
                continue  # replayed meanwhile
        return total

    def replay(self, store: EvaluationStore, batch: int = 500) -> int:
        """Write the spilled records into ``store`` and remove them; returns how many were
        written. ``StoreUnavailableError`` (the store is down again) leaves the rest for
        the next replay."""
        with self._lock:
            self._rotate()  # the file appended to so far becomes replayable
        written = 0
        for path in self._files():
            written += self._replay_file(path, store, batch)
        return written

    def close(self) -> None:
        with self._lock:
            self._rotate()

    # -- files ----------------------------------------------------------------------------------

    def _files(self) -> list[Path]:
        if not self._folder.is_dir():
            return []
        return sorted(self._folder.glob(f"{self._name}.*.spill"))

    def _create(self) -> int:
        self._folder.mkdir(parents=True, exist_ok=True)
        stem = f"{self._name}.{time.time_ns():020d}.{os.getpid()}"
        final = self._folder / f"{stem}.spill"
        new = self._folder / f"{stem}.spill-new"
        fd = os.open(new, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            new.rename(final)
            _sync_folder(self._folder)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _rotate(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # releases its lock
            self._fd = None

    def _replay_file(self, path: Path, store: EvaluationStore, batch: int) -> int:
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return 0
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return 0  # being written, or replayed by another process
            if os.fstat(fd).st_nlink == 0:
                return 0  # another replayer finished it between our listing and our lock
            with os.fdopen(os.dup(fd), "rb") as file:
                lines = file.read().splitlines()
            done = _done(path)
            records = list(_decode_lines(path, lines))
            written = 0
            for run in _runs(records[done:], batch):
                predictions = [r for r in run if isinstance(r, LoggedPrediction)]
                if predictions:
                    store.write_predictions(predictions)
                else:
                    store.write_ground_truth([r for r in run if isinstance(r, GroundTruth)])
                done += len(run)
                written += len(run)
                _save_done(path, done)
            path.unlink()
            _done_path(path).unlink(missing_ok=True)
            return written
        finally:
            os.close(fd)


def _runs(records: Sequence[SpilledRecord], batch: int) -> Iterator[list[SpilledRecord]]:
    """Consecutive records of one kind, ``batch`` at most: written in order, one call each."""
    run: list[SpilledRecord] = []
    for record in records:
        if run and (type(record) is not type(run[0]) or len(run) >= batch):
            yield run
            run = []
        run.append(record)
    if run:
        yield run


def _done_path(path: Path) -> Path:
    return path.with_name(path.name + ".done")


def _done(path: Path) -> int:
    try:
        return int(_done_path(path).read_text() or 0)
    except FileNotFoundError:
        return 0
    except ValueError:
        return 0  # a .done torn by a crash cannot exist (renamed into place): be lenient


def _save_done(path: Path, done: int) -> None:
    final = _done_path(path)
    new = final.with_name(final.name + "-new")
    with new.open("w") as file:
        file.write(str(done))
        file.flush()
        os.fsync(file.fileno())
    new.replace(final)


def _count_lines(path: Path) -> int:
    with path.open("rb") as file:
        return sum(1 for line in file if line.strip())


def _sync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# -- records as JSON ------------------------------------------------------------------------------


def _bytes_out(value: bytes) -> str | dict[str, str]:
    """Text when it is UTF-8 (the tensor log and ground truth are orjson output), else
    base64."""
    try:
        return value.decode()
    except UnicodeDecodeError:
        return {"b64": base64.b64encode(value).decode()}


def _bytes_in(value: Any) -> bytes:
    if isinstance(value, dict):
        return base64.b64decode(value["b64"])
    return str(value).encode()


def _encode(record: SpilledRecord) -> dict[str, Any]:
    if isinstance(record, LoggedPrediction):
        return {
            "t": "p",
            "model": record.model,
            "version": record.version,
            "request_id": record.request_id,
            "timestamp": record.timestamp,
            "role": record.role,
            "latency_ms": record.latency_ms,
            "rows": record.rows,
            "keys": None if record.keys is None else list(record.keys),
            "inputs": _bytes_out(record.inputs),
            "outputs": _bytes_out(record.outputs),
        }
    return {
        "t": "g",
        "model": record.model,
        "request_id": record.request_id,
        "key": record.key,
        "value": _bytes_out(record.value),
        "received": record.received,
    }


def _decode(document: dict[str, Any]) -> SpilledRecord:
    if document["t"] == "p":
        keys = document["keys"]
        return LoggedPrediction(
            model=document["model"],
            version=int(document["version"]),
            request_id=document["request_id"],
            timestamp=float(document["timestamp"]),
            role="shadow" if document["role"] == "shadow" else "primary",
            latency_ms=float(document["latency_ms"]),
            rows=int(document["rows"]),
            keys=None if keys is None else tuple(keys),
            inputs=_bytes_in(document["inputs"]),
            outputs=_bytes_in(document["outputs"]),
        )
    return GroundTruth(
        model=document["model"],
        request_id=document["request_id"],
        key=document["key"],
        value=_bytes_in(document["value"]),
        received=float(document["received"]),
    )


def _decode_lines(path: Path, lines: list[bytes]) -> Iterator[SpilledRecord]:
    """The records of ``lines``; a line that is not one (the tail of a write cut short by a
    crash) is logged and skipped, so it never blocks the rest."""
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            yield _decode(orjson.loads(line))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            logger.warning("%s line %d: not a spilled record, skipped (%s)", path, number, exc)
