"""What the ``*_instructions.py`` benchmarks share: run a script's ``--child VARIANT N`` under
valgrind's callgrind and read the instructions its main thread (the event loop) ran.

A script counts each variant twice, with a small and a large number of requests, and divides
the difference by the difference in requests: start-up and model loading cancel out. Hash
randomisation is off (``PYTHONHASHSEED=0``), so the counts repeat from run to run.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

_SUMMARY = re.compile(rb"^summary: (\d+)", re.MULTILINE)


def count(script: str | Path, variant: str, requests: int) -> int:
    """Instructions the main thread of ``script --child variant requests`` ran, in all."""
    with tempfile.TemporaryDirectory() as folder:
        subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                "--separate-threads=yes",
                f"--callgrind-out-file={folder}/callgrind.out",
                sys.executable,
                str(script),
                "--child",
                variant,
                str(requests),
            ],
            capture_output=True,
            check=True,
            env=dict(os.environ, PYTHONHASHSEED="0"),
        )
        main_thread = Path(folder, "callgrind.out-01").read_bytes()
    match = _SUMMARY.search(main_thread)
    if match is None:
        raise RuntimeError("no instruction count in callgrind's output for thread 1")
    return int(match.group(1))


def per_request(
    script: str | Path, variants: Sequence[str], small: int, large: int
) -> dict[str, float]:
    """Each variant's instructions per request: the count at ``large`` requests less the count
    at ``small``, divided by ``large - small``."""
    jobs = [(variant, requests) for variant in variants for requests in (small, large)]
    with ThreadPoolExecutor(2) as pool:  # two valgrind processes: one per core
        counts = dict(zip(jobs, pool.map(lambda job: count(script, *job), jobs), strict=True))
    return {
        variant: (counts[variant, large] - counts[variant, small]) / (large - small)
        for variant in variants
    }
