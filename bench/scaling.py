"""Throughput scaling of replicas (issue 18, item 6): rows/s through HAProxy for 1, 2 and 3
serval replicas, each in a network namespace of its own (deploy/local-cluster), each held to
the same CPU share, the load generator (wrk) in a namespace of its own.

The machine has 2 cores, so a replica cannot have a core to itself: every replica is pinned to
core 1 (taskset) and held to ``--cpu-share`` of it by a cgroup v1 CPU quota, while wrk and
HAProxy are pinned to core 0. Three replicas at 0.3 of a core use 0.9 of core 1, so each gets
its share whatever the others do, and the load generator never takes a replica's CPU.

    sudo python bench/scaling.py --replicas 1 2 3 --seconds 15

Prints one line per replica count and a last line ``SCALING_RESULT {json}``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from types import ModuleType

import numpy as np

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))
from bench.models import MODELS, write_repository  # noqa: E402

SCRIPT = BENCH.parent / "deploy" / "local-cluster" / "local_cluster.py"


def load_cluster_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("local_cluster", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["local_cluster"] = module
    spec.loader.exec_module(module)
    return module


def body(model: str, rows: int, folder: Path) -> Path:
    """A V2 JSON request of ``rows`` seeded rows of ``model``."""
    data = np.random.default_rng(7).standard_normal((rows, MODELS[model].features))
    values = ",".join(str(v) for v in data.astype(np.float32).ravel())
    path = folder / f"{model}-{rows}.json"
    path.write_text(
        f'{{"inputs":[{{"name":"x","shape":[{rows},{MODELS[model].features}],'
        f'"datatype":"FP32","data":[{values}]}}]}}'
    )
    return path


def wrk(prefix: list[str], url: str, model: str, request: Path, connections: int, seconds: int):
    env = {
        **os.environ,
        "BENCH_PATH": f"/v2/models/{model}/infer",
        "BENCH_BODY": str(request),
        "BENCH_HEADER_LEN": "",
    }
    command = [
        *prefix,
        "taskset",
        "-c",
        "0",
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{seconds}s",
        "--timeout",
        "10s",
        "-s",
        str(BENCH / "v2_infer.lua"),
        url,
    ]
    done = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=seconds + 60, check=True
    )
    line = next(x for x in done.stdout.splitlines() if x.startswith("BENCH_RESULT "))
    return json.loads(line.removeprefix("BENCH_RESULT "))


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` and its threads so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replicas", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--model", default="tiny", choices=sorted(MODELS))
    parser.add_argument("--rows", type=int, default=64, help="rows per request")
    parser.add_argument("--cpu-share", type=float, default=0.3, help="of a core, per replica")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--seconds", type=int, default=15)
    args = parser.parse_args()
    local_cluster = load_cluster_script()
    work = Path(tempfile.mkdtemp(prefix="serval-scaling-"))
    repo = write_repository(work / "repo", [args.model], intra_op_threads=1, max_queue_size=256)
    request = body(args.model, args.rows, work)
    results = {}
    for count in args.replicas:
        with local_cluster.LocalCluster(
            repo, replicas=count, cpus=["1"], cpu_quota=args.cpu_share
        ) as cluster:
            subprocess.run(
                ["taskset", "-a", "-p", "-c", "0", str(cluster.haproxy_pid)],
                check=True,
                capture_output=True,
            )
            with local_cluster.load_generator_host(cluster) as prefix:
                wrk(prefix, cluster.url, args.model, request, args.connections, 3)  # warm up
                pids = [replica.process.pid for replica in cluster.members]
                before = [cpu_seconds(pid) for pid in pids]
                result = wrk(
                    prefix, cluster.url, args.model, request, args.connections, args.seconds
                )
                used = [cpu_seconds(pid) - b for pid, b in zip(pids, before, strict=True)]
        seconds = result["duration_us"] / 1e6
        # Only answers count: a 503 of HAProxy (no replica up) is fast, not throughput.
        rows_s = (result["requests"] - result["non2xx"]) * args.rows / seconds
        errors = result["non2xx"] + sum(result[k] for k in ("connect", "read", "write", "timeout"))
        results[count] = {
            "rows_s": round(rows_s),
            "p50_ms": result["p50_us"] / 1e3,
            "p99_ms": result["p99_us"] / 1e3,
            "errors": errors,
            # Cores each replica used: below --cpu-share, the machine (not the quota) held it.
            "replica_cores": [round(u / seconds, 2) for u in used],
            # rows/s per core the replicas used: flat when replicas add capacity linearly.
            "rows_per_core_s": round(rows_s * seconds / max(sum(used), 1e-9)),
            "isolation": cluster.isolation,
        }
        base = results[args.replicas[0]]["rows_s"]
        print(
            f"{count} replica(s): {rows_s:,.0f} rows/s ({rows_s / base:.2f} x), "
            f"p50 {result['p50_us'] / 1e3:.1f} ms, p99 {result['p99_us'] / 1e3:.1f} ms, "
            f"errors {errors}, cores per replica {results[count]['replica_cores']}, "
            f"{results[count]['rows_per_core_s']:,} rows per replica-core second",
            flush=True,
        )
    print("SCALING_RESULT " + json.dumps({"args": vars(args), "results": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
