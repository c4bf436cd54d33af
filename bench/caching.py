"""What the prediction cache and online features give and cost (issue 16's targets).

``cache``: one server of the working tree with the ``mlp`` bench model twice, one with
``cache: {backend: memory}``, one with ``cache: {backend: redis}`` (``--redis-url``). wrk
drives each with one-row V2 JSON requests at ``--connections``: "miss" runs send a body no
request sent before (a number in it changes every request), "hit" runs the same body again
and again; both in V2 JSON and in the binary tensor data extension (``--encodings``).
Reported per round and as medians: rows/s of each, and hit / miss per backend.
Targets: >= 3 x (memory) and >= 2 x (Redis) at 64 connections.

``features``: one server with the ``tiny`` bench model twice: ``plain`` takes its 32 features
in the request; ``featured`` takes 16 of them in the request and looks up the other 16 from a
Redis hash by ``user_id`` (``features: {append: true}``). Latency at 1 connection of each,
alternating (target: featured <= 1.3 x plain); then 8-row requests at ``--connections``,
counting Redis's ``cmdstat_hmget`` calls and serval's feature lookups against the requests
wrk sent (target: one lookup, one round trip, per request; one HMGET per row).

Usage: python bench/caching.py cache [--connections 64] [--rounds 3] [--duration 5]
       python bench/caching.py features [--connections 64] [--rounds 3] [--duration 5]
       (--redis-url redis://127.0.0.1:6379/0 for both)
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import urllib.request
import uuid
from pathlib import Path

import onnx
import redis

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))

from bench.load import binary_body  # noqa: E402
from bench.models import MODELS, build, model_yaml, single_row  # noqa: E402
from bench.servers import start_tree  # noqa: E402

FIELDS = 16
USERS = 1000


# Numbers a "miss" run writes into its bodies: each run its own range, all below 2**24 so
# that FP32 keeps them apart (a larger number would round onto its neighbours: hits); the
# binary bodies put 23 bits of it in a value's mantissa.
_SEEDS = iter(range(1, 2**23, 200_000))


def run_wrk(
    port: int,
    route: str,
    body: Path,
    connections: int,
    seconds: float,
    *,
    vary: bool = False,
    header_len: int | None = None,
) -> dict[str, float]:
    env = dict(
        os.environ,
        BENCH_PATH=route,
        BENCH_BODY=str(body),
        BENCH_VARY="1" if vary else "0",
        BENCH_SEED=str(next(_SEEDS)) if vary else "0",
        BENCH_HEADER_LEN="" if header_len is None else str(header_len),
    )
    command = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{seconds:g}s",
        "-s",
        str(BENCH / "caching.lua"),
    ]
    out = subprocess.run(
        [*command, f"http://127.0.0.1:{port}"], env=env, capture_output=True, text=True, check=True
    ).stdout
    line = next(line for line in out.splitlines() if line.startswith("BENCH_RESULT"))
    result: dict[str, float] = json.loads(line.split(" ", 1)[1])
    if result["non2xx"]:
        raise RuntimeError(f"{route}: {result['non2xx']:.0f} answers were not 2xx")
    return result


def rate(result: dict[str, float]) -> float:
    return result["requests"] / (result["duration_us"] / 1e6)


def write_model(root: Path, name: str, model: str, extra: str) -> None:
    folder = root / name / "1"
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(build(model), folder / "model.onnx")
    spec = model_yaml(MODELS[model], 1, 4096) + extra
    (root / name / "model.yaml").write_text(spec, encoding="utf-8")


def body_file(folder: Path, name: str, inputs: list[dict[str, object]]) -> Path:
    path = folder / f"{name}.json"
    path.write_text(json.dumps({"inputs": inputs}))
    return path


def median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=60)


def cache(args: argparse.Namespace) -> None:
    prefix = f"bench-{uuid.uuid4().hex[:8]}:"
    with tempfile.TemporaryDirectory() as temp:
        folder = Path(temp)
        repo = folder / "repo"
        write_model(repo, "memory", "mlp", "cache: {backend: memory, max_entries: 1000000}\n")
        write_model(repo, "redis", "mlp", "cache: {backend: redis, ttl_s: 600}\n")
        row = single_row("mlp")
        values = row.ravel().tolist()
        fixed = {"name": "x", "datatype": "FP32", "shape": [1, len(values)], "data": values}
        bodies: dict[str, tuple[Path, Path, int | None]] = {}
        hit_json = body_file(folder, "hit", [fixed])
        # The first value of the row changes with every request: "__N__" becomes a number.
        miss_json = folder / "miss.json"
        miss_json.write_text(json.dumps({"inputs": [fixed]}).replace(str(values[0]), "__N__", 1))
        bodies["json"] = (miss_json, hit_json, None)
        binary, header_len = binary_body(row)
        binary_file = folder / "body.bin"
        binary_file.write_bytes(binary)
        bodies["binary"] = (binary_file, binary_file, header_len)
        flags = ["--redis-url", args.redis_url, "--redis-prefix", prefix]
        process, port = start_tree(ROOT / "src", repo, folder / "serval.log", flags)
        runs: dict[str, list[float]] = {}
        try:
            for round_index in range(args.rounds):
                flip = round_index % 2 == 1  # every other round the other order
                for backend in ("redis", "memory") if flip else ("memory", "redis"):
                    for encoding in args.encodings:
                        miss_body, hit_body, header = bodies[encoding]
                        for kind in ("hit", "miss") if flip else ("miss", "hit"):
                            result = run_wrk(
                                port,
                                f"/v2/models/{backend}/infer",
                                miss_body if kind == "miss" else hit_body,
                                args.connections,
                                args.duration,
                                vary=kind == "miss",
                                header_len=header,
                            )
                            name = f"{backend} {encoding} {kind}"
                            runs.setdefault(name, []).append(rate(result))
                            p50, p99 = result["p50_us"] / 1e3, result["p99_us"] / 1e3
                            print(
                                f"{name:19} {rate(result):8,.0f} rows/s  p50 {p50:6.2f} ms  "
                                f"p99 {p99:6.2f} ms",
                                flush=True,
                            )
            stats = fetch(port, "/v2/models/memory/stats")["model_stats"][0]["inference_stats"]
            print(f"memory statistics: {stats['cache_hit']['count']} hits, "
                  f"{stats['cache_miss']['count']} misses")  # fmt: skip
        finally:
            stop(process)
            client = redis.Redis.from_url(args.redis_url)
            keys = list(client.scan_iter(f"{prefix}*"))
            if keys:
                client.delete(*keys)
            client.close()
    for backend in ("memory", "redis"):
        for encoding in args.encodings:
            name = f"{backend} {encoding}"
            hit, miss = median(runs[f"{name} hit"]), median(runs[f"{name} miss"])
            print(f"{name}: median hit {hit:,.0f}, miss {miss:,.0f} rows/s: {hit / miss:.2f} x")


def fetch(port: int, path: str) -> dict[str, object]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
        found: dict[str, object] = json.load(response)
        return found


def metric(port: int, name: str, model: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and f'model="{model}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def hmget_calls(client: redis.Redis) -> int:
    stats = client.info("commandstats")
    return int(stats.get("cmdstat_hmget", {}).get("calls", 0))


def features(args: argparse.Namespace) -> None:
    prefix = f"bench-{uuid.uuid4().hex[:8]}:"
    client = redis.Redis.from_url(args.redis_url)
    names = [f"f{i}" for i in range(FIELDS)]
    pipe = client.pipeline(transaction=False)
    row = single_row("tiny").ravel().tolist()
    for user in range(USERS):
        pipe.hset(f"{prefix}user:u{user}", mapping=dict(zip(names, row[FIELDS:], strict=True)))
    pipe.execute()
    with tempfile.TemporaryDirectory() as temp:
        folder = Path(temp)
        repo = folder / "repo"
        write_model(repo, "plain", "tiny", "")
        featured = (
            "features:\n"
            "  entity: user_id\n"
            f'  key: "{prefix}user:{{user_id}}"\n'
            f"  fields: [{', '.join(names)}]\n"
            "  into: x\n"
            "  append: true\n"
        )
        write_model(repo, "featured", "tiny", featured)
        plain_body = body_file(
            folder, "plain", [{"name": "x", "datatype": "FP32", "shape": [1, 32], "data": row}]
        )

        def featured_inputs(rows: int) -> list[dict[str, object]]:
            users = [f"u{i * 97 % USERS}" for i in range(rows)]
            return [
                {"name": "user_id", "datatype": "BYTES", "shape": [rows], "data": users},
                {
                    "name": "x",
                    "datatype": "FP32",
                    "shape": [rows, FIELDS],
                    "data": row[:FIELDS] * rows,
                },
            ]

        one_body = body_file(folder, "featured1", featured_inputs(1))
        eight_body = body_file(folder, "featured8", featured_inputs(8))
        process, port = start_tree(
            ROOT / "src", repo, folder / "serval.log", ["--redis-url", args.redis_url]
        )
        latency: dict[str, list[float]] = {"plain": [], "featured": []}
        try:
            for round_index in range(args.rounds):
                order = ["plain", "featured"] if round_index % 2 == 0 else ["featured", "plain"]
                for name in order:
                    body = plain_body if name == "plain" else one_body
                    result = run_wrk(port, f"/v2/models/{name}/infer", body, 1, args.duration)
                    latency[name].append(result["mean_us"])
                    print(
                        f"{name:8} 1 connection: mean {result['mean_us'] / 1e3:6.3f} ms  p99 "
                        f"{result['p99_us'] / 1e3:6.3f} ms",
                        flush=True,
                    )
            for name in ("plain", "featured"):
                stats = fetch(port, f"/v2/models/{name}/stats")
                success = stats["model_stats"][0]["inference_stats"]["success"]  # type: ignore[index]
                # The data plane's part of a request: from decoded to answered.
                print(f"{name}: {success['ns'] / success['count'] / 1e3:.0f} µs in the data plane")
            before_calls = hmget_calls(client)
            before_lookups = metric(port, "serval_feature_lookups_total", "featured")
            result = run_wrk(
                port, "/v2/models/featured/infer", eight_body, args.connections, args.duration
            )
            calls = hmget_calls(client) - before_calls
            lookups = metric(port, "serval_feature_lookups_total", "featured") - before_lookups
            requests = result["requests"]
            print(
                f"featured, 8 rows per request, {args.connections} connections: "
                f"{rate(result) * 8:,.0f} rows/s; {requests:,.0f} requests, {lookups:,.0f} "
                f"lookups (round trips), {calls:,} HMGET ({calls / (requests * 8):.3f} per row)"
            )
        finally:
            stop(process)
            keys = list(client.scan_iter(f"{prefix}*"))
            if keys:
                client.delete(*keys)
            client.close()
    plain, with_features = median(latency["plain"]), median(latency["featured"])
    print(
        f"median latency at 1 connection: plain {plain / 1e3:.3f} ms, featured "
        f"{with_features / 1e3:.3f} ms: {with_features / plain:.2f} x"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=["cache", "features"])
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument(
        "--encodings",
        type=lambda text: text.split(","),
        default=["binary", "json"],
        help="cache: the V2 encodings to send, binary (the binary tensor data extension, as "
        "tritonclient and perf_analyzer send) and/or json (default binary,json)",
    )
    args = parser.parse_args()
    cache(args) if args.what == "cache" else features(args)


if __name__ == "__main__":
    main()
