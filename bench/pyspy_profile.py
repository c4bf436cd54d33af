"""Profile a server under load with py-spy, and summarise where its time goes.

``record`` samples the process (all its threads, GIL-holding or not; ``--native`` adds C frames)
while a load runs, writing py-spy's collapsed stacks (``--format raw``: one line per distinct
stack, ``frame;frame;...;frame count``). ``summarise`` turns those into the functions with the
most samples on top of the stack (self) and anywhere in it (inclusive), per thread kind, as
percentages of all samples: the table to read first when a target is missed.

Alone: ``python bench/pyspy_profile.py summarise bench/results/profile-tiny-json-64.txt``.
"""

from __future__ import annotations

import argparse
import collections
import re
import subprocess
from pathlib import Path

_LOCATION = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def record(pid: int, seconds: float, out: Path, mode: str = "gil") -> subprocess.Popen[bytes]:
    """Start py-spy on ``pid`` for ``seconds``; the caller waits for the returned process.

    ``mode``: ``gil`` samples only the thread holding the GIL: for a server bound by Python
    overhead, where its one event loop spends the time (time in a garbage collection counts
    against the function whose allocation triggered it). ``cpu`` samples every thread py-spy
    thinks is running (it takes a pool thread blocked in ``queue.get`` for a running
    ``_worker``); ``native`` adds C frames to ``cpu`` but slows the server several-fold."""
    command = [
        "py-spy",
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(max(1, round(seconds))),
        "--rate",
        "250",
        "--format",
        "raw",
        "--threads",
        "--subprocesses",
        "--output",
        str(out),
    ]
    if mode == "gil":
        command.append("--gil")
    elif mode == "native":
        command.append("--native")
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _function(frame: str) -> str:
    """``name (path/to/module.py:12)`` -> ``name (module.py)``: lines merged, paths shortened."""
    match = _LOCATION.match(frame.strip())
    if not match:
        return frame.strip()
    parts = Path(match["file"]).parts
    short = "/".join(parts[-2:]) if len(parts) > 1 else match["file"]
    for marker in ("serval", "site-packages"):
        if marker in parts:
            short = "/".join(parts[parts.index(marker) + (marker == "site-packages") :])
    return f"{match['func']} ({short})"


def _thread_kind(frame: str) -> str:
    """py-spy's ``thread (0x7f..): serval-instance_0`` to ``serval-instance_#``."""
    name = frame.strip().rpartition("): ")[2]
    return re.sub(r"\d+", "#", name)


def summarise(path: Path, top: int = 20) -> str:
    samples = 0
    self_counts: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    threads: collections.Counter[str] = collections.Counter()
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        # --subprocesses and --threads put 'process ...' and 'thread ...' frames first.
        heads = [f for f in frames if f.startswith("thread ")]
        body = [_function(f) for f in frames if not f.startswith(("process ", "thread "))]
        samples += count
        threads[" / ".join(_thread_kind(h) for h in heads) or "?"] += count
        if body:
            self_counts[body[-1]] += count
            for function in set(body):
                inclusive[function] += count
    if not samples:
        return f"{path}: no samples"

    def table(title: str, counter: collections.Counter[str]) -> list[str]:
        rows = [f"| {title} | % of samples |", "|---|---:|"]
        rows += [f"| `{name}` | {100 * n / samples:.1f} |" for name, n in counter.most_common(top)]
        return rows

    lines = [f"{samples} samples from {path.name}", ""]
    lines += [*table("thread", threads), ""]
    lines += [*table("self (top of stack)", self_counts), ""]
    lines += table("inclusive (anywhere in stack)", inclusive)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    summary = commands.add_parser("summarise", help="top functions of a raw py-spy profile")
    summary.add_argument("profile", type=Path)
    summary.add_argument("--top", type=int, default=20)
    args = parser.parse_args()
    print(summarise(args.profile, args.top))


if __name__ == "__main__":
    main()
