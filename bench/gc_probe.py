"""Run ``serval`` with the cyclic garbage collector timed, and optionally frozen after start-up.

A diagnostic wrapper for bench/run.py (``--serval-gc stats|freeze``), not part of serval:

    python bench/gc_probe.py serve MODEL_REPOSITORY [serval serve's arguments]

- Every collection is timed through ``gc.callbacks``. On SIGUSR1 the process writes the totals
  per generation (collections and seconds) as JSON to ``$GC_PROBE_FILE``; run.py signals
  before and after each run and reports the share of the run spent collecting.
- ``GC_PROBE_FREEZE=1``: once the server answers ready (polled here), ``gc.collect()`` then
  ``gc.freeze()``, which moves every object alive after start-up (modules, classes, the
  loaded models' Python objects) out of the collector's generations, so full collections
  no longer walk them. It shows what serval would gain by doing so itself after loading.
"""

from __future__ import annotations

import gc
import json
import os
import signal
import sys
import threading
import time
import urllib.request
from pathlib import Path

_totals = {generation: [0, 0.0] for generation in range(3)}
_started = [0.0]


def _on_gc(phase: str, info: dict[str, int]) -> None:
    if phase == "start":
        _started[0] = time.perf_counter()
    else:
        total = _totals[info["generation"]]
        total[0] += 1
        total[1] += time.perf_counter() - _started[0]


def _write(_signum: int = 0, _frame: object = None) -> None:
    path = os.environ.get("GC_PROBE_FILE")
    if path:
        state = {
            "collections": {g: t[0] for g, t in _totals.items()},
            "seconds": {g: t[1] for g, t in _totals.items()},
            "tracked": len(gc.get_objects()),
            "frozen": gc.get_freeze_count(),
            "time": time.time(),
        }
        Path(path + ".tmp").write_text(json.dumps(state), encoding="utf-8")
        Path(path + ".tmp").replace(path)


def _freeze_when_ready(url: str) -> None:
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1) as answer:
                if answer.status == 200:
                    break
        except OSError:
            pass
        time.sleep(0.02)
    gc.collect()
    gc.freeze()
    _write()


def main() -> None:
    here = str(Path(__file__).resolve().parent)
    sys.path[:] = [p for p in sys.path if p and str(Path(p).resolve()) != here]  # bench's modules
    gc.callbacks.append(_on_gc)
    signal.signal(signal.SIGUSR1, _write)
    args = sys.argv[1:]
    if os.environ.get("GC_PROBE_FREEZE") == "1":
        port = args[args.index("--http-port") + 1]
        url = f"http://127.0.0.1:{port}/v2/health/ready"
        threading.Thread(target=_freeze_when_ready, args=(url,), daemon=True).start()
    from serval.cli.main import main as serval_main  # noqa: PLC0415 - after the hooks

    sys.exit(serval_main(args))


if __name__ == "__main__":
    main()
