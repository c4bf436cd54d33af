"""The benchmark's report: markdown tables of the runs, the ratios and the issue 4 targets."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from load import Load
from servers import Server


@dataclass
class Run:
    model: str
    server: str
    protocol: str
    connections: int
    load: Load
    server_cpu: float  # the server's CPU time during the run / the run's wall time (cores)
    client_cpu: float  # the load generator's, likewise
    machine_cpu: float = 0.0  # the whole machine's busy cores during the run
    gc_share: float | None = None  # share of the run's wall time serval spent collecting
    others_cpu: float = 0.0  # the idle servers' cores during the run
    rounds: int = 1  # runs of this scenario; the others' fields are those of the median run
    rps_min: float = 0.0
    rps_max: float = 0.0


def median_run(rounds: Sequence[Run]) -> Run:
    """The run with the median rows/s (the lower one of an even count), with the spread of
    rows/s over the rounds, and the requests and errors of all rounds summed."""
    ordered = sorted(rounds, key=lambda r: r.load.rps)
    middle = ordered[(len(ordered) - 1) // 2]
    total = dataclasses.replace(
        middle.load,
        requests=sum(r.load.requests for r in rounds),
        errors=sum(r.load.errors for r in rounds),
        socket_errors=sum(r.load.socket_errors for r in rounds),
    )
    return dataclasses.replace(
        middle,
        load=total,
        rounds=len(rounds),
        rps_min=ordered[0].load.rps,
        rps_max=ordered[-1].load.rps,
    )


def _find(runs: Sequence[Run], model: str, server: str, protocol: str, conns: int) -> Run | None:
    for run in runs:
        if (run.model, run.server, run.protocol, run.connections) == (
            model,
            server,
            protocol,
            conns,
        ):
            return run
    return None


def runs_table(runs: Sequence[Run]) -> str:
    spread = any(r.rounds > 1 for r in runs)
    lines = [
        "| model | server | protocol | conns | rows/s"
        + (" (min-max)" if spread else "")
        + " | p50 ms | p99 ms | errors | server CPU "
        "| client CPU | machine CPU |"
        + (" GC |" if any(r.gc_share is not None for r in runs) else ""),
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
        + ("---:|" if any(r.gc_share is not None for r in runs) else ""),
    ]
    for run in runs:
        load = run.load
        errors = f"{load.errors}" + (
            f" (+{load.socket_errors} socket)" if load.socket_errors else ""
        )
        lines.append(
            f"| {run.model} | {run.server} | {run.protocol} | {run.connections} | {load.rps:,.0f}"
            + (f" ({run.rps_min:,.0f}-{run.rps_max:,.0f})" if spread else "")
            + " "
            f"| {load.p50_ms:.2f} | {load.p99_ms:.2f} | {errors} | {run.server_cpu:.2f} "
            f"| {run.client_cpu:.2f} | {run.machine_cpu:.2f} |"
            + (f" {100 * run.gc_share:.1f}% |" if run.gc_share is not None else "")
        )
    return "\n".join(lines)


def servers_table(servers: Sequence[Server]) -> str:
    lines = [
        "| server | start-up to ready | RSS at ready | RSS peak (during load) |",
        "|---|---:|---:|---:|",
    ]
    for server in servers:
        lines.append(
            f"| {server.name} | {server.startup_s:.2f} s | {server.rss_ready / 1e6:.0f} MB "
            f"| {server.rss_peak / 1e6:.0f} MB |"
        )
    return "\n".join(lines)


def limit_table(limits: dict[str, dict[int, float]]) -> str:
    sizes = sorted({size for per_model in limits.values() for size in per_model})
    lines = [
        "| model | " + " | ".join(f"batch {size}" for size in sizes) + " |",
        "|---|" + "---:|" * len(sizes),
    ]
    for model, per_size in limits.items():
        cells = [f"{per_size[size]:,.0f}" if size in per_size else "" for size in sizes]
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def ratios_table(runs: Sequence[Run], limits: dict[str, dict[int, float]]) -> str:
    """serval's rows/s over the limit's best, the naive server's best and Triton's, for each
    model, protocol and connection count that serval ran."""
    lines = [
        "| model | protocol | conns | serval / limit | serval / naive (best) | serval / Triton |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for run in runs:
        if run.server != "serval":
            continue
        limit = max(limits.get(run.model, {0: 0.0}).values())
        naive = [
            r.load.rps
            for r in runs
            if r.server.startswith("naive")
            and (r.model, r.connections) == (run.model, run.connections)
            and r.protocol == "json"
        ]
        triton = _find(runs, run.model, "triton", run.protocol, run.connections)

        def ratio(other: float | None, rps: float = run.load.rps) -> str:
            return f"{rps / other:.2f}" if other else "-"

        lines.append(
            f"| {run.model} | {run.protocol} | {run.connections} | {ratio(limit)} "
            f"| {ratio(max(naive) if naive else None)} "
            f"| {ratio(triton.load.rps if triton else None)} |"
        )
    return "\n".join(lines)


def _verdict(ok: bool | None) -> str:
    return {True: "met", False: "**not met**", None: "not measured"}[ok]


def targets_table(
    runs: Sequence[Run], limits: dict[str, dict[int, float]], servers: Sequence[Server]
) -> str:
    """Issue 4's targets, each with the numbers it was judged on."""
    rows: list[tuple[str, bool | None, str]] = []

    def rps(model: str, server: str, conns: int) -> float | None:
        run = _find(runs, model, server, "json", conns)
        return run.load.rps if run else None

    def naive_runs(model: str, conns: int) -> list[Run]:
        return [
            r
            for r in runs
            if r.server.startswith("naive") and (r.model, r.connections) == (model, conns)
        ]

    s, t = rps("mlp", "serval", 64), rps("mlp", "triton", 64)
    limit = max(limits["mlp"].values()) if limits.get("mlp") else None
    rows.append(
        (
            "mlp, 64 conns, JSON: serval >= 2 x Triton",
            None if s is None or t is None else s >= 2 * t,
            f"{s or 0:,.0f} vs {t or 0:,.0f} rows/s = {s / t:.2f} x" if s and t else "-",
        )
    )
    best = max(limits["mlp"], key=limits["mlp"].__getitem__) if limits.get("mlp") else None
    rows.append(
        (
            "mlp, 64 conns, JSON: serval >= 0.35 x in-process limit",
            None if s is None or limit is None else s >= 0.35 * limit,
            f"{s:,.0f} vs {limit:,.0f} rows/s (batch {best}) = {s / limit:.2f} x"
            if s and limit
            else "-",
        )
    )
    s, t = rps("tiny", "serval", 64), rps("tiny", "triton", 64)
    rows.append(
        (
            "tiny, 64 conns, JSON: serval >= 2 x Triton",
            None if s is None or t is None else s >= 2 * t,
            f"{s or 0:,.0f} vs {t or 0:,.0f} req/s = {s / t:.2f} x" if s and t else "-",
        )
    )
    naive = naive_runs("tiny", 64)
    best_naive = max(naive, key=lambda r: r.load.rps) if naive else None
    rows.append(
        (
            "tiny, 64 conns, JSON: serval >= 2 x naive (best config)",
            None if s is None or best_naive is None else s >= 2 * best_naive.load.rps,
            f"{s:,.0f} vs {best_naive.load.rps:,.0f} req/s ({best_naive.server}) = "
            f"{s / best_naive.load.rps:.2f} x"
            if s and best_naive
            else "-",
        )
    )
    for model in ("tiny", "mlp"):
        serval_run = _find(runs, model, "serval", "json", 1)
        naive = naive_runs(model, 1)
        fastest = min(naive, key=lambda r: r.load.p50_ms) if naive else None
        ok = None
        if serval_run and fastest:
            ok = serval_run.load.p50_ms <= 1.2 * fastest.load.p50_ms
        rows.append(
            (
                f"{model}, 1 conn, JSON: serval p50 <= 1.2 x naive's",
                ok,
                f"{serval_run.load.p50_ms:.3f} vs {fastest.load.p50_ms:.3f} ms ({fastest.server})"
                f" = {serval_run.load.p50_ms / fastest.load.p50_ms:.2f} x"
                if serval_run and fastest
                else "-",
            )
        )
    serval_run = _find(runs, "tiny", "serval", "json", 1)
    rows.append(
        (
            "tiny, 1 conn, JSON: serval p99 < 1 ms",
            None if serval_run is None else serval_run.load.p99_ms < 1.0,
            f"{serval_run.load.p99_ms:.3f} ms" if serval_run else "-",
        )
    )
    serval_server = next((x for x in servers if x.name == "serval"), None)
    if serval_server is not None:
        models = ", ".join(serval_server.models)
        rows.append(
            (
                f"serval RSS with {models} loaded, one worker <= 150 MB",
                serval_server.rss_peak <= 150e6,
                f"{serval_server.rss_ready / 1e6:.0f} MB at ready, "
                f"{serval_server.rss_peak / 1e6:.0f} MB peak under load",
            )
        )
        rows.append(
            (
                "serval start-up to ready < 1 s",
                serval_server.startup_s < 1.0,
                f"{serval_server.startup_s:.2f} s",
            )
        )
    serval_runs = [r for r in runs if r.server == "serval"]
    failed = [r for r in serval_runs if r.load.errors or r.load.socket_errors]
    rows.append(
        (
            "serval: zero errors below the queue limit",
            None if not serval_runs else not failed,
            f"{sum(r.load.errors + r.load.socket_errors for r in serval_runs)} errors in "
            f"{sum(r.load.requests for r in serval_runs):,} requests ({len(serval_runs)} runs)",
        )
    )
    lines = ["| target | verdict | numbers |", "|---|---|---|"]
    lines += [f"| {name} | {_verdict(ok)} | {numbers} |" for name, ok, numbers in rows]
    return "\n".join(lines)
