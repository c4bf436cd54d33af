"""Progress of a job: a rich bar (rows, rows/s, ETA) on a terminal, a log line every few
seconds otherwise, and the summary at the end."""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass
from typing import Protocol

logger = logging.getLogger("serval.batch")

LOG_EVERY_S = 5.0


@dataclass(frozen=True, slots=True)
class JobSummary:
    """What a job did: rows scored now, parts written now and skipped (resumed), seconds."""

    rows: int
    parts_written: int
    parts_skipped: int
    seconds: float
    output: str

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        skipped = f", {self.parts_skipped} skipped (already written)" if self.parts_skipped else ""
        return (
            f"scored {self.rows:,} rows in {self.seconds:.1f} s ({self.rows_per_s:,.0f} rows/s); "
            f"{self.parts_written} part(s) written{skipped} to {self.output}"
        )


class Progress(Protocol):
    def start(self, total_rows: int | None) -> None: ...

    def advance(self, rows: int) -> None: ...

    def finish(self) -> None: ...


class SilentProgress:
    def start(self, total_rows: int | None) -> None:
        pass

    def advance(self, rows: int) -> None:
        pass

    def finish(self) -> None:
        pass


class LogProgress:
    """A log line every ``every_s`` seconds: rows done, rows/s and (when the total is known)
    the share done."""

    def __init__(self, every_s: float = LOG_EVERY_S) -> None:
        self._every_s = every_s
        self._total: int | None = None
        self._rows = 0
        self._started = self._last = 0.0

    def start(self, total_rows: int | None) -> None:
        self._total = total_rows
        self._started = self._last = time.monotonic()

    def advance(self, rows: int) -> None:
        self._rows += rows
        now = time.monotonic()
        if now - self._last >= self._every_s:
            self._last = now
            rate = self._rows / max(now - self._started, 1e-9)
            share = f" of {self._total:,} ({self._rows / self._total:.0%})" if self._total else ""
            logger.info("%s rows%s, %s rows/s", f"{self._rows:,}", share, f"{rate:,.0f}")

    def finish(self) -> None:
        pass


class RichProgress:
    """A rich progress bar on stderr."""

    def __init__(self) -> None:
        from rich.progress import (  # noqa: PLC0415 - only on a terminal
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._bar = Progress(
            TextColumn("scoring"),
            BarColumn(),
            MofNCompleteColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[rate]} rows/s"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            transient=False,
        )
        self._task = self._bar.add_task("rows", total=None, rate="-")
        self._started = 0.0
        self._rows = 0

    def start(self, total_rows: int | None) -> None:
        self._started = time.monotonic()
        self._bar.update(self._task, total=total_rows)
        self._bar.start()

    def advance(self, rows: int) -> None:
        self._rows += rows
        rate = self._rows / max(time.monotonic() - self._started, 1e-9)
        self._bar.update(self._task, advance=rows, rate=f"{rate:,.0f}")

    def finish(self) -> None:
        self._bar.stop()


def terminal_progress() -> Progress:
    """A bar on a terminal, log lines otherwise."""
    return RichProgress() if sys.stderr.isatty() else LogProgress()
