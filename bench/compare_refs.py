"""A/B of two serval source trees on one model: the working tree against a git ref.

Exports ``--baseline-ref`` with ``git archive`` into a temporary folder (the working tree is
untouched), starts both servers side by side on the reference models of bench/models.py, and
drives each in turn with wrk (one-row V2 JSON requests), alternating which goes first each
round so drift on a noisy machine hits both alike. Reports per round and the median: req/s,
p50, p99 and the server's CPU time per request (from /proc; the steadier number).

Usage: python bench/compare_refs.py --baseline-ref HEAD~1 [--model tiny] [--connections 64]
[--rounds 3] [--duration 5]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))

from bench.models import single_row, write_repository  # noqa: E402
from bench.servers import interleaved_rounds, medians, start_tree  # noqa: E402


def export(ref: str, folder: Path) -> Path:
    archive = subprocess.run(
        ["git", "archive", ref, "src"], cwd=ROOT, capture_output=True, check=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(folder, filter="data")
    return folder / "src"


def run_wrk(port: int, model: str, body: Path, connections: int, seconds: float) -> dict[str, int]:
    env = dict(os.environ, BENCH_PATH=f"/v2/models/{model}/infer", BENCH_BODY=str(body))
    script = str(BENCH / "v2_infer.lua")
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "-s", script]
    out = subprocess.run(
        [*command, f"http://127.0.0.1:{port}"], env=env, capture_output=True, text=True, check=True
    ).stdout
    line = next(line for line in out.splitlines() if line.startswith("BENCH_RESULT"))
    result: dict[str, int] = json.loads(line.split(" ", 1)[1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline-ref", required=True)
    parser.add_argument("--model", default="tiny", choices=["tiny", "mlp"])
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temp:
        folder = Path(temp)
        repository = write_repository(folder / "repository", ["tiny", "mlp"], 1, 1024)
        row = single_row(args.model)
        doc = {"inputs": [{"name": "x", "datatype": "FP32", "shape": list(row.shape)}]}
        doc["inputs"][0]["data"] = row.ravel().tolist()
        body = folder / "body.json"
        body.write_text(json.dumps(doc))
        trees = {
            "baseline": export(args.baseline_ref, folder / "baseline"),
            "working": ROOT / "src",
        }
        servers = {
            name: start_tree(src, repository, folder / f"{name}.log") for name, src in trees.items()
        }
        try:
            results = interleaved_rounds(
                servers,
                args.rounds,
                lambda port: run_wrk(port, args.model, body, args.connections, args.duration),
            )
        finally:
            for process, _ in servers.values():
                process.terminate()
                process.wait(timeout=30)
    found = medians(results)
    (base_rate, base_cpu), (rate, cpu) = found["baseline"], found["working"]
    print(f"working / baseline: {rate / base_rate:.2f} x req/s, {cpu / base_cpu:.2f} x CPU/request")


if __name__ == "__main__":
    main()
