"""What the prediction log costs, and that it loses nothing (issue 14's targets).

``cost``: servers of the working tree on repositories holding the ``tiny`` bench model, one
without monitoring and one per logging variant (``monitoring: {log: {sample_rate: R}}`` with R
0.1 and 1.0, each on SQLite under its own state folder and, with ``--postgres URL``, on
PostgreSQL). wrk drives each in turn with one-row V2 JSON requests (bench/rollout.lua), the
order alternating each round; reported: req/s and CPU per request per round, the medians, and
each variant / none. Targets: 0.1 >= 0.97 x, 1.0 >= 0.85 x at 64 connections.

``loss``: one server logging every request (sample_rate 1.0) on SQLite (or ``--postgres``).
wrk sends for ``--duration`` seconds; once the server's statistics count ``--requests``
successes, SIGTERM reaches it while wrk is still sending (a deployment stops under load). The
server drains and exits; wrk goes on against the closed port until its time is up. The 200
answers wrk received must equal the records in the store.

Usage: python bench/evaluation_log.py cost [--connections 64] [--rounds 3] [--duration 5]
           [--postgres postgresql://root@127.0.0.1:5432/test]
       python bench/evaluation_log.py loss [--requests 100000] [--connections 64]
           [--postgres URL]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import onnx

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))

from bench.models import MODELS, build, model_yaml, single_row  # noqa: E402
from bench.rollout import run_wrk  # noqa: E402
from bench.servers import interleaved_rounds, medians, start_tree  # noqa: E402


def repository(root: Path, sample_rate: float | None) -> Path:
    folder = root / "tiny" / "1"
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(build("tiny"), folder / "model.onnx")
    spec = model_yaml(MODELS["tiny"], 1, 1024)
    if sample_rate is not None:
        spec += f"monitoring:\n  log: {{sample_rate: {sample_rate}}}\n"
    (root / "tiny" / "model.yaml").write_text(spec, encoding="utf-8")
    return root


def request_body(folder: Path) -> Path:
    row = single_row("tiny")
    doc = {"inputs": [{"name": "x", "datatype": "FP32", "shape": list(row.shape)}]}
    doc["inputs"][0]["data"] = row.ravel().tolist()
    body = folder / "body.json"
    body.write_text(json.dumps(doc))
    return body


def store_flags(folder: Path, postgres: str | None) -> list[str]:
    flags = ["--state-dir", str(folder / "state")]
    return [*flags, "--store", postgres] if postgres else flags


def fresh_postgres(url: str, schema: str) -> str:
    """``url`` with its own empty schema (search_path), so runs never share rows."""
    import psycopg  # noqa: PLC0415 - only with --postgres

    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        connection.execute(f"CREATE SCHEMA {schema}")
    separator = "&" if "?" in url else "?"
    return f"{url}{separator}options=-csearch_path%3D{schema}"


def cost(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as temp:
        folder = Path(temp)
        body = request_body(folder)
        variants: list[tuple[str, float | None, str | None]] = [
            ("none", None, None),
            ("sqlite-0.1", 0.1, None),
            ("sqlite-1.0", 1.0, None),
        ]
        if args.postgres:
            variants += [
                ("pg-0.1", 0.1, fresh_postgres(args.postgres, "bench_log_01")),
                ("pg-1.0", 1.0, fresh_postgres(args.postgres, "bench_log_10")),
            ]
        servers = {}
        for name, rate, postgres in variants:
            root = folder / name
            servers[name] = start_tree(
                ROOT / "src",
                repository(root, rate),
                folder / f"{name}.log",
                store_flags(root, postgres),
            )
        try:
            results = interleaved_rounds(
                servers,
                args.rounds,
                lambda port: run_wrk(port, body, args.connections, args.duration),
            )
        finally:
            for process, _ in servers.values():
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=60)
    found = medians(results)
    base_rate, base_cpu = found["none"]
    for name, (rate, cpu) in found.items():
        if name != "none":
            print(f"{name} / none: {rate / base_rate:.3f} x req/s, {cpu / base_cpu:.2f} x CPU")


def successes(port: int) -> int:
    url = f"http://127.0.0.1:{port}/v2/models/tiny/stats"
    with urllib.request.urlopen(url, timeout=5) as response:
        stats = json.load(response)["model_stats"]
    return int(sum(s["inference_stats"]["success"]["count"] for s in stats))


def stored(folder: Path, postgres: str | None) -> int:
    if postgres:
        import psycopg  # noqa: PLC0415 - only with --postgres

        with psycopg.connect(postgres) as connection:
            row = connection.execute("SELECT count(*) FROM serval_predictions").fetchone()
            return int(row[0]) if row else 0
    with sqlite3.connect(folder / "state" / "evaluation.sqlite3") as connection:
        return int(connection.execute("SELECT count(*) FROM serval_predictions").fetchone()[0])


def loss(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as temp:
        folder = Path(temp)
        body = request_body(folder)
        postgres = fresh_postgres(args.postgres, "bench_log_loss") if args.postgres else None
        process, port = start_tree(
            ROOT / "src",
            repository(folder / "repo", 1.0),
            folder / "server.log",
            store_flags(folder, postgres),
        )
        outcome: dict[str, int] = {}

        def load() -> None:
            outcome.update(run_wrk(port, body, args.connections, args.duration))

        wrk_thread = threading.Thread(target=load, daemon=True)
        wrk_thread.start()
        started = time.monotonic()
        while time.monotonic() - started < args.duration - 5:
            time.sleep(0.2)
            if successes(port) >= args.requests:
                break
        signalled = successes(port)
        os.kill(process.pid, signal.SIGTERM)
        process.wait(timeout=120)
        wrk_thread.join()
        answered = outcome["requests"] - outcome["non2xx"]
        records = stored(folder, postgres)
        print(f"successes when SIGTERM was sent: {signalled:,}")
        print(f"200 answers wrk received:        {answered:,}")
        print(f"records in the store after exit: {records:,}")
        print(f"server exit status {process.returncode}")
        print("no record lost" if records >= answered else f"LOST {answered - records} records")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=["cost", "loss"])
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--postgres", default=None)
    args = parser.parse_args()
    if args.mode == "loss" and args.duration == 5.0:
        args.duration = 90.0  # time for --requests at a few thousand a second, and the drain
    (cost if args.mode == "cost" else loss)(args)


if __name__ == "__main__":
    main()
