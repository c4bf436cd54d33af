"""``python -m serval.cli.worker INDEX PARENT_PID``: one server process of
``serval serve --workers N``, started by ``cli.supervisor`` with the pickled settings on its
standard input. It serves until SIGTERM/SIGINT, or until its parent is gone."""

from __future__ import annotations

import logging
import os
import pickle
import signal
import sys
import threading
import time
from collections.abc import Sequence

from serval.cli.serve import serve_settings
from serval.config import Settings
from serval.observability.logging import JsonFormatter, configure_logging

_PARENT_POLL_S = 1.0


class WorkerTag(logging.Filter):
    """Tells which worker logged: a field ``worker`` in JSON lines, ``logger[N]`` in text."""

    def __init__(self, index: int, *, text: bool) -> None:
        super().__init__()
        self._index = index
        self._text = text

    def filter(self, record: logging.LogRecord) -> bool:
        if self._text:
            record.name = f"{record.name}[{self._index}]"
        else:
            record.worker = self._index
        return True


def main(argv: Sequence[str]) -> int:
    index, parent_pid = int(argv[0]), int(argv[1])
    settings = pickle.load(sys.stdin.buffer)  # from the parent, which holds the same settings
    if not isinstance(settings, Settings):
        raise TypeError(f"expected Settings on standard input, got {type(settings).__name__}")
    handler = configure_logging(settings.log_level, settings.log_format)
    handler.addFilter(WorkerTag(index, text=not isinstance(handler.formatter, JsonFormatter)))
    threading.Thread(
        target=_stop_when_orphaned, args=(parent_pid,), name="serval-parent-watch", daemon=True
    ).start()
    try:
        return serve_settings(settings)
    except KeyboardInterrupt:  # SIGINT before the server's own handler was installed
        return 0


def _stop_when_orphaned(parent_pid: int) -> None:
    """Stop this worker gracefully (as SIGTERM would) once its parent has gone."""
    while os.getppid() == parent_pid:
        time.sleep(_PARENT_POLL_S)
    logging.getLogger("serval.supervisor").error("the parent process is gone; stopping")
    os.kill(os.getpid(), signal.SIGTERM)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
