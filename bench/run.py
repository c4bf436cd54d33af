"""serval's benchmark harness (issue 4): serval against the physical limit and two peers.

One command runs it all:

    python bench/run.py --duration 10

1. builds the reference models ``tiny`` and ``mlp`` (bench/models.py) into a model repository
   under bench/results/<run>/ (git-ignored), with serval's model.yaml (dynamic batching on);
2. measures the physical limit: in-process onnxruntime rows/s at batch 1..128 (bench/limit.py)
   with the intra-op thread count every server gets;
3. starts, one at a time (so each start-up is timed alone), serval, the naive FastAPI server
   with 1 and 2 uvicorn workers (bench/naive_server.py) and Triton through pytriton
   (bench/pytriton_server.py), checks that each answers the models correctly, and keeps them
   all running;
4. drives each from a separate process, wrk (V2 JSON; binary for serval and Triton) and
   bench/grpc_load.py (gRPC), at each connection count, one server at a time, in the same
   order for every scenario so that servers compared are measured minutes apart at most;
5. optionally profiles serval under chosen loads with py-spy (after the measurements, so the
   sampling does not slow them);
6. prints the report and writes it (markdown and JSON) to bench/results/<run>/.

Servers listen on free loopback ports; every load has a fixed duration; every process started
is stopped at the end, also on failure or Ctrl-C.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import httpx
import load
import models
import numpy as np
import pyspy_profile
import report
import servers
from report import Run

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="serval's benchmark: serval vs the in-process limit, naive FastAPI, Triton.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    split = lambda text: [x for x in text.split(",") if x]  # noqa: E731
    numbers = lambda text: [int(x) for x in split(text)]  # noqa: E731
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measured run")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up load")
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="runs of each scenario, servers in rotated order; the median run is reported",
    )
    parser.add_argument("--models", type=split, default=["tiny", "mlp"])
    parser.add_argument(
        "--servers", type=split, default=["serval", "naive", "triton"], help="which to run"
    )
    parser.add_argument("--naive-workers", type=numbers, default=[1, 2])
    parser.add_argument("--concurrency", type=numbers, default=[1, 16, 64])
    parser.add_argument(
        "--protocols",
        type=split,
        default=["json", "binary", "grpc"],
        help="json (wrk, all servers), binary (wrk, serval and Triton), grpc (serval and Triton)",
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="onnxruntime intra-op threads, every server"
    )
    parser.add_argument("--max-queue-size", type=int, default=1024, help="serval's bound")
    parser.add_argument("--limit-seconds", type=float, default=1.0, help="per batch size")
    parser.add_argument("--naive-python", default="/tmp/naive-venv/bin/python")
    parser.add_argument("--triton-python", default="/tmp/pytriton-venv/bin/python")
    parser.add_argument("--triton-delay-us", type=int, default=0, help="max_queue_delay_us")
    parser.add_argument("--triton-instances", type=int, default=1, help="model instances")
    parser.add_argument(
        "--serval-arg", action="append", default=[], help="extra `serval serve` argument"
    )
    parser.add_argument(
        "--serval-gc",
        choices=["off", "stats", "freeze"],
        default="off",
        help="stats: time serval's garbage collection (bench/gc_probe.py); freeze: also "
        "gc.freeze() once ready, to see what that would gain",
    )
    parser.add_argument(
        "--profile",
        action="append",
        default=[],
        metavar="MODEL:PROTOCOL:CONNS[:MODE]",
        help="afterwards, profile serval with py-spy under this load (e.g. tiny:json:64; "
        "MODE overrides --profile-mode)",
    )
    parser.add_argument(
        "--profile-mode",
        choices=["gil", "cpu", "native"],
        default="gil",
        help="gil: only the thread holding the GIL (Python overhead); cpu: every thread on "
        "CPU; native: cpu with C frames (slows the server several-fold)",
    )
    parser.add_argument("--out", type=Path, default=None, help="default bench/results/<time>")
    parser.add_argument(
        "--rerender",
        type=Path,
        default=None,
        metavar="RESULTS_DIR",
        help="measure nothing: write RESULTS_DIR/report.md again from its report.json",
    )
    return parser.parse_args(argv)


def measure_limit(repository: Path, names: list[str], threads: int, seconds: float) -> dict:
    """In a process of its own, so that its onnxruntime threads are gone afterwards."""
    limits: dict[str, dict[int, float]] = {}
    for name in names:
        done = subprocess.run(
            [
                sys.executable,
                str(BENCH / "limit.py"),
                str(models.onnx_path(repository, name)),
                "--threads",
                str(threads),
                "--seconds",
                str(seconds),
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=300,
        )
        limits[name] = {int(k): v for k, v in json.loads(done.stdout).items()}
        print(f"limit {name}: " + ", ".join(f"b{k} {v:,.0f}" for k, v in limits[name].items()))
    return limits


def check_answers(server: servers.Server, repository: Path, names: list[str]) -> None:
    """One JSON request per model; the answer must match onnxruntime in-process."""
    import onnxruntime as ort  # noqa: PLC0415 - only the check needs it here

    with httpx.Client(base_url=server.http_url, timeout=30) as client:
        for name in names:
            row = models.single_row(name)
            answer = client.post(
                f"/v2/models/{name}/infer",
                content=load.json_body(row),
                headers={"Content-Type": "application/json"},
            )
            answer.raise_for_status()
            output = next(o for o in answer.json()["outputs"] if o["name"] == models.OUTPUT_NAME)
            session = ort.InferenceSession(str(models.onnx_path(repository, name)))
            expected = session.run(None, {models.INPUT_NAME: row})[0]
            got = np.asarray(output["data"], dtype=np.float32).reshape(expected.shape)
            if not np.allclose(got, expected, rtol=1e-4, atol=1e-5):
                raise RuntimeError(f"{server.name} answered {name} wrongly: {got} != {expected}")


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs, from /proc/stat."""
    values = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def drive(
    server: servers.Server,
    model: str,
    protocol: str,
    connections: int,
    seconds: float,
    bodies: dict[str, dict[str, tuple[Path, int]]],
) -> load.Load:
    if protocol == "grpc":
        return load.grpc(
            server.grpc_target, model, models.MODELS[model].features, connections, seconds
        )
    return load.wrk(server.http_url, model, bodies[model][protocol], connections, seconds)


def measure(
    server: servers.Server,
    others: list[servers.Server],
    model: str,
    protocol: str,
    connections: int,
    seconds: float,
    bodies: dict[str, dict[str, tuple[Path, int]]],
) -> Run:
    """One measured run, with the server's CPU use and the rest of the machine's."""
    gc_before = server.gc_seconds()
    cpu_before = servers.cpu_seconds(server.pid)
    others_before = sum(servers.cpu_seconds(o.pid) for o in others)
    busy_before, total_before = machine_busy()
    wall_before = time.perf_counter()
    result = drive(server, model, protocol, connections, seconds, bodies)
    wall = time.perf_counter() - wall_before
    busy_after, total_after = machine_busy()
    server_cpu = (servers.cpu_seconds(server.pid) - cpu_before) / wall
    others_cpu = (sum(servers.cpu_seconds(o.pid) for o in others) - others_before) / wall
    cores = os.cpu_count() or 1
    machine = cores * (busy_after - busy_before) / max(1, total_after - total_before)
    gc_after = server.gc_seconds()
    gc_share = None if gc_before is None or gc_after is None else (gc_after - gc_before) / wall
    server.sample_rss()
    client_cpu = result.client_cpu_s / wall
    run = Run(
        model,
        server.name,
        protocol,
        connections,
        result,
        server_cpu,
        client_cpu,
        machine,
        gc_share,
        others_cpu,
        rps_min=result.rps,
        rps_max=result.rps,
    )
    print(
        f"{model:5} {server.name:9} {protocol:6} c{connections:<3} {result.rps:9,.0f} rows/s  "
        f"p50 {result.p50_ms:7.3f} ms  p99 {result.p99_ms:7.3f} ms  errors {result.errors}"
        f"{'+' + str(result.socket_errors) if result.socket_errors else ''}  "
        f"server CPU {server_cpu:.2f}  client CPU {client_cpu:.2f}  idle servers {others_cpu:.2f}"
        f"  machine {machine:.2f}"
        + (f"  GC {100 * gc_share:.1f}%" if gc_share is not None else ""),
        flush=True,
    )
    return run


def start_servers(
    args: argparse.Namespace, repository: Path, logs: Path, started: list[servers.Server]
) -> list[str]:
    """Start the servers one at a time, adding each to ``started`` (so that the caller stops
    it whatever happens); returns notes on those that could not run."""
    wanted: list[servers.Server] = []
    if "serval" in args.servers:
        wanted.append(
            servers.serval(repository, args.models, logs, args.serval_arg, args.serval_gc)
        )
    if "naive" in args.servers:
        wanted += [
            servers.naive(args.naive_python, repository, args.models, n, args.threads, logs)
            for n in args.naive_workers
        ]
    if "triton" in args.servers:
        wanted.append(
            servers.triton(
                args.triton_python,
                repository,
                args.models,
                args.threads,
                args.triton_delay_us,
                args.triton_instances,
                logs,
            )
        )
    notes = []
    for server in wanted:
        try:
            started.append(server)
            server.start()
            check_answers(server, repository, args.models)
        except Exception as exc:  # a peer that cannot run is reported, not fatal
            tail = (
                server.log_path.read_text(errors="replace")[-2000:]
                if server.log_path.exists()
                else ""
            )
            notes.append(f"{server.name} could not run: {exc}\n{tail}")
            print(notes[-1], file=sys.stderr)
            started.remove(server)
            server.stop()
            continue
        print(
            f"{server.name}: ready in {server.startup_s:.2f} s, "
            f"RSS {server.rss_ready / 1e6:.0f} MB",
            flush=True,
        )
    return notes


def profile_serval(
    serval: servers.Server,
    specs: list[str],
    seconds: float,
    mode: str,
    bodies: dict[str, dict[str, tuple[Path, int]]],
    out: Path,
) -> list[str]:
    summaries = []
    for spec in specs:
        model, protocol, connections, *rest = spec.split(":")
        spec_mode = rest[0] if rest else mode
        raw = out / f"profile-{model}-{protocol}-{connections}-{spec_mode}.txt"
        sampler = pyspy_profile.record(serval.pid, seconds, raw, spec_mode)
        time.sleep(0.5)  # py-spy attaches
        result = drive(serval, model, protocol, int(connections), seconds, bodies)
        _, err = sampler.communicate(timeout=seconds + 60)
        if sampler.returncode != 0 or not raw.exists():
            summaries.append(f"py-spy failed for {spec}: {err.decode(errors='replace')}")
            continue
        summary = pyspy_profile.summarise(raw)
        (raw.with_suffix(".md")).write_text(summary + "\n", encoding="utf-8")
        summaries.append(
            f"### serval under {model}:{protocol}:{connections}, py-spy mode {spec_mode} (with "
            f"py-spy attached: {result.rps:,.0f} rows/s, p50 {result.p50_ms:.2f} ms)\n\n{summary}"
        )
        print(summaries[-1], flush=True)
    return summaries


def rerender(folder: Path) -> None:
    """Write a run's report.md again from its report.json (after a change to the report)."""
    saved = json.loads((folder / "report.json").read_text(encoding="utf-8"))
    command = saved["command"]
    args = parse_args(shlex.split(command)[2:])
    stamp = datetime.datetime.fromisoformat(saved["date"])
    limits = {m: {int(k): v for k, v in sizes.items()} for m, sizes in saved["limits"].items()}
    started = []
    for entry in saved["servers"]:
        server = servers.Server(entry["name"], [], args.models, (), folder / "unused.log")
        server.startup_s, server.rss_ready = entry["startup_s"], entry["rss_ready"]
        server.rss_peak = entry["rss_peak"]
        started.append(server)
    grouped: dict[tuple[str, str, str, int], list[Run]] = {}
    for entry in saved["runs"]:
        run = Run(**{**entry, "load": load.Load(**entry["load"])})
        grouped.setdefault((run.model, run.server, run.protocol, run.connections), []).append(run)
    runs = [report.median_run(rounds) for rounds in grouped.values()]
    profiles = saved.get("profiles") or [
        f"### {path.stem}\n\n{path.read_text(encoding='utf-8')}"
        for path in sorted(folder.glob("profile-*.md"))
    ]
    text = render(args, command, stamp, limits, started, runs, saved.get("notes", []), profiles)
    (folder / "report.md").write_text(text, encoding="utf-8")
    print(text)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.rerender is not None:
        rerender(args.rerender)
        return
    stamp = datetime.datetime.now(datetime.UTC)
    out = args.out or RESULTS / stamp.strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    command = "python bench/run.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    repository = models.write_repository(
        out / "models", args.models, args.threads, args.max_queue_size
    )
    bodies = {
        name: load.write_bodies(out / "bodies", name, models.single_row(name))
        for name in args.models
    }
    print(f"{command}\nresults in {out}", flush=True)
    limits = measure_limit(repository, args.models, args.threads, args.limit_seconds)
    started: list[servers.Server] = []
    runs: list[Run] = []
    all_runs: list[Run] = []
    profiles: list[str] = []
    notes: list[str] = []
    try:
        notes = start_servers(args, repository, out, started)
        plan = [
            (server, protocol)
            for server in started
            for protocol in args.protocols
            if protocol in server.protocols
        ]
        for model in args.models:
            for server, protocol in plan:  # warm-up: caches, allocators, connection setup
                drive(server, model, protocol, 16, args.warmup, bodies)
            for connections in args.concurrency:
                rounds: dict[tuple[str, str], list[Run]] = {}
                for index in range(args.rounds):  # each round starts with the next server
                    shift = index % len(plan)
                    for server, protocol in plan[shift:] + plan[:shift]:
                        others = [s for s in started if s is not server]
                        run = measure(
                            server, others, model, protocol, connections, args.duration, bodies
                        )
                        all_runs.append(run)
                        rounds.setdefault((server.name, protocol), []).append(run)
                runs += [report.median_run(rounds[(s.name, p)]) for s, p in plan]
        serval = next((s for s in started if s.name == "serval"), None)
        if args.profile and serval is not None:
            profiles = profile_serval(
                serval, args.profile, args.duration, args.profile_mode, bodies, out
            )
    finally:
        for server in started:
            server.stop()
    text = render(args, command, stamp, limits, started, runs, notes, profiles)
    (out / "report.md").write_text(text, encoding="utf-8")
    (out / "report.json").write_text(
        json.dumps(
            {
                "command": command,
                "date": stamp.isoformat(),
                "limits": limits,
                "notes": notes,
                "profiles": profiles,
                "servers": [
                    {
                        "name": s.name,
                        "startup_s": s.startup_s,
                        "rss_ready": s.rss_ready,
                        "rss_peak": s.rss_peak,
                    }
                    for s in started
                ],
                "runs": [dataclasses.asdict(r) for r in all_runs],
            },
            indent=1,
        ),
        encoding="utf-8",
    )
    print("\n" + text)
    print(f"written to {out / 'report.md'}")


def render(
    args: argparse.Namespace,
    command: str,
    stamp: datetime.datetime,
    limits: dict,
    started: list[servers.Server],
    runs: list[Run],
    notes: list[str],
    profiles: list[str],
) -> str:
    idle = [r.others_cpu for r in runs]
    sections = [
        f"Command: `{command}`  ",
        f"Date: {stamp:%Y-%m-%d %H:%M} UTC; {os.cpu_count()} cores; onnxruntime intra-op "
        f"threads {args.threads} everywhere; serval max_queue_size {args.max_queue_size}; "
        f"Triton max_queue_delay_us {args.triton_delay_us}, {args.triton_instances} instance(s); "
        f"{args.duration:g} s per run"
        + (
            f", median of {args.rounds} rounds (rows/s min-max in brackets)."
            if args.rounds > 1
            else "."
        ),
        "",
        "In-process limit (onnxruntime rows/s, no server):",
        "",
        report.limit_table(limits),
        "",
        report.servers_table(started),
        "",
        report.runs_table(runs),
        "",
        "rows/s = requests/s (one row per request); p50/p99: the load generator's latency. "
        "server CPU: the server's process tree, client CPU: the load generator's, machine CPU: "
        f"the whole machine's (of {os.cpu_count()}; the rest is other work on the machine), "
        "all in cores averaged over the run"
        + (
            ", GC: share of the run serval spent in garbage collection"
            if args.serval_gc != "off"
            else ""
        )
        + ". The idle servers used "
        + (f"at most {max(idle):.2f} cores" if idle else "-")
        + " while another was measured.",
        "",
        "Ratios of serval's rows/s (naive: its best worker count, JSON):",
        "",
        report.ratios_table(runs, limits),
        "",
        "Issue 4 targets:",
        "",
        report.targets_table(runs, limits, started),
    ]
    if notes:
        sections += ["", "Servers that could not run:", "", *(f"```\n{n}\n```" for n in notes)]
    if profiles:
        sections += ["", "## Profiles (py-spy)", "", *profiles]
    return "\n".join(sections) + "\n"


if __name__ == "__main__":
    main()
