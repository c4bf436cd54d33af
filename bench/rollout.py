"""Throughput with a traffic policy against the same server without one (issue 12's target).

Two servers of the working tree on two repositories holding the same ``tiny`` bench model as
versions 1 and 2 (``version_policy: all``): one with no traffic policy (every request to the
latest version), one with two routes and sticky users (``routes: {"1": 50, "2": 50}``,
``sticky: {header: x-user-id}``). wrk drives each in turn with one-row V2 JSON requests, each
with its own x-user-id (bench/rollout.lua, for both servers alike), alternating which goes
first each round. Reports req/s, p50, p99, the server's CPU time per request and the requests
per batch (from the statistics endpoint) per round, the medians, and policy / no policy.
Target: >= 0.95 x req/s at 64 connections.

Each version has its own queue and instance, so a split also halves each version's batches: at
50/50 the model runs twice as many batches of half the size, which costs CPU per request (more
hops to instance threads, more executions) on top of the policy's own work. ``--control`` adds
a third server that tells the two apart: the same policy with ``routes: {"1": 1, "2": 99}``
(every request is hashed by its sticky key, as at 50/50, but nearly all go to one version's
batches, as without a policy); "policy / control" is then what the split itself costs.

Usage: python bench/rollout.py [--connections 64] [--rounds 3] [--duration 5] [--routes JSON]
       [--control]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

import onnx

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))

from bench.models import MODELS, build, model_yaml, single_row  # noqa: E402
from bench.servers import cpu_seconds, start_tree  # noqa: E402

ROUTES = '{"1": 50, "2": 50}'
CONTROL_ROUTES = '{"1": 1, "2": 99}'  # the policy's work per request, one version's batches


def policy(routes: str) -> str:
    return f"traffic:\n  routes: {routes}\n  sticky: {{header: x-user-id}}\n"


def repository(root: Path, traffic: str) -> Path:
    """``tiny`` as versions 1 and 2, both served; ``traffic``: the model.yaml section, or ""."""
    for version in (1, 2):
        folder = root / "tiny" / str(version)
        folder.mkdir(parents=True, exist_ok=True)
        onnx.save(build("tiny"), folder / "model.onnx")
    spec = model_yaml(MODELS["tiny"], 1, 1024) + "version_policy: all\n" + traffic
    (root / "tiny" / "model.yaml").write_text(spec, encoding="utf-8")
    return root


def run_wrk(port: int, body: Path, connections: int, seconds: float) -> dict[str, int]:
    env = dict(os.environ, BENCH_PATH="/v2/models/tiny/infer", BENCH_BODY=str(body))
    script = str(BENCH / "rollout.lua")
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "-s", script]
    out = subprocess.run(
        [*command, f"http://127.0.0.1:{port}"], env=env, capture_output=True, text=True, check=True
    ).stdout
    line = next(line for line in out.splitlines() if line.startswith("BENCH_RESULT"))
    result: dict[str, int] = json.loads(line.split(" ", 1)[1])
    return result


def batched(port: int) -> tuple[int, int]:
    """(rows inferred, model executions) of all of ``tiny``'s versions so far."""
    url = f"http://127.0.0.1:{port}/v2/models/tiny/stats"
    with urllib.request.urlopen(url, timeout=5) as response:
        stats = json.load(response)["model_stats"]
    return sum(s["inference_count"] for s in stats), sum(s["execution_count"] for s in stats)


def served(port: int) -> dict[str, int]:
    """Requests per version since the policy was set (the policy's server only)."""
    url = f"http://127.0.0.1:{port}/v2/models/tiny/traffic"
    with urllib.request.urlopen(url, timeout=5) as response:
        counts: dict[str, int] = json.load(response)["served"]
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument(
        "--routes",
        default=ROUTES,
        help=f'the policy\'s routes (default {ROUTES}); e.g. \'{{"1": 1, "2": 99}}\' keeps '
        "the per-request policy work but sends nearly everything to one version, as without a "
        "policy (each version batches on its own instance: a split halves the batches)",
    )
    parser.add_argument(
        "--control",
        action="store_true",
        help=f"add a third server, the same policy with routes {CONTROL_ROUTES}: the policy's "
        "work per request with one version's batches; policy / control is the split's cost",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temp:
        folder = Path(temp)
        row = single_row("tiny")
        doc = {"inputs": [{"name": "x", "datatype": "FP32", "shape": list(row.shape)}]}
        doc["inputs"][0]["data"] = row.ravel().tolist()
        body = folder / "body.json"
        body.write_text(json.dumps(doc))
        variants = [("none", ""), ("policy", policy(args.routes))]
        if args.control:
            variants.append(("control", policy(CONTROL_ROUTES)))
        servers = {
            name: start_tree(
                ROOT / "src", repository(folder / name, traffic), folder / f"{name}.log"
            )
            for name, traffic in variants
        }
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in servers}
        try:
            for round_index in range(args.rounds):
                order = list(servers) if round_index % 2 == 0 else list(reversed(servers))
                for name in order:
                    process, port = servers[name]
                    cpu_before, (rows_before, runs_before) = cpu_seconds(process.pid), batched(port)
                    wrk = run_wrk(port, body, args.connections, args.duration)
                    cpu_per_request = (cpu_seconds(process.pid) - cpu_before) / wrk["requests"]
                    rows, runs = batched(port)
                    per_batch = (rows - rows_before) / max(1, runs - runs_before)
                    rate = wrk["requests"] / (wrk["duration_us"] / 1e6)
                    results[name].append((rate, cpu_per_request * 1e6))
                    print(
                        f"{name:7} {rate:8,.0f} req/s  p50 {wrk['p50_us'] / 1e3:6.2f} ms  "
                        f"p99 {wrk['p99_us'] / 1e3:6.2f} ms  "
                        f"CPU/request {cpu_per_request * 1e6:6.1f} µs  "
                        f"rows/batch {per_batch:5.1f}  non-2xx {wrk['non2xx']}",
                        flush=True,
                    )
            for name in servers:
                if name != "none":
                    print(f"{name} server, requests per version: {served(servers[name][1])}")
        finally:
            for process, _ in servers.values():
                process.terminate()
                process.wait(timeout=30)
    medians = {}
    for name, measured in results.items():
        rates = sorted(rate for rate, _ in measured)
        cpus = sorted(cpu for _, cpu in measured)
        medians[name] = (rates[len(rates) // 2], cpus[len(cpus) // 2])
        print(f"{name:7} median {medians[name][0]:8,.0f} req/s, {medians[name][1]:6.1f} µs CPU/req")
    pairs = [("policy", "none")]
    if "control" in medians:
        pairs += [("control", "none"), ("policy", "control")]
    for a, b in pairs:
        (rate, cpu), (base_rate, base_cpu) = medians[a], medians[b]
        print(f"{a} / {b}: {rate / base_rate:.2f} x req/s, {cpu / base_cpu:.2f} x CPU/request")


if __name__ == "__main__":
    main()
