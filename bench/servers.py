"""Start, watch and stop the servers under test: serval and its two peers.

Each server runs as a process group of its own (``start_new_session``), on free loopback ports,
with its output in a log file. Start-up time is from ``Popen`` to the first moment every model
answers ready; memory is the resident set summed over the process tree (Triton is a tree of
processes: pytriton's Python, ``tritonserver`` and one Python-backend stub per model).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

BENCH = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_tree(
    src: Path, repository: Path, log: Path, extra: Sequence[str] = ()
) -> tuple[subprocess.Popen[bytes], int]:
    """``serval serve repository`` from the source tree ``src`` (its ``PYTHONPATH``), REST only,
    on a free port, with the flags ``extra``; returns the process and the port once it answers
    ready (a minute at most). For A/B runs of two trees or two repositories side by side
    (compare_refs, rollout, evaluation_log)."""
    port = free_port()
    command = [sys.executable, "-m", "serval", "serve", str(repository), "--host", "127.0.0.1"]
    command += ["--http-port", str(port), "--grpc-port", "0", "--log-level", "warning", *extra]
    process = subprocess.Popen(
        command,
        env=dict(os.environ, PYTHONPATH=str(src)),
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb"),
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/ready", timeout=1):
                return process, port
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"serval from {src} on {repository} did not become ready; see {log}")


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants that are alive now."""
    pids, todo = [], [pid]
    while todo:
        current = todo.pop()
        pids.append(current)
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{current}/task").iterdir():
                children = (task / "children").read_text().split()
                todo.extend(int(child) for child in children)
    return pids


def rss_bytes(pid: int) -> int:
    """Resident set of ``pid``'s process tree, in bytes (shared pages counted in each)."""
    total = 0
    for member in process_tree(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{member}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
    return total


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid``'s process tree so far, in seconds."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for member in process_tree(pid):
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


@dataclass
class Server:
    """One server under test. ``protocols`` are those the load generators may use on it."""

    name: str
    command: list[str]
    models: list[str]
    protocols: tuple[str, ...]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    http_port: int = 0
    grpc_port: int = 0
    process: subprocess.Popen[bytes] | None = None
    startup_s: float = 0.0
    rss_ready: int = 0
    rss_peak: int = 0

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def ready_paths(self) -> list[str]:
        """serval and the naive server are ready when their server is; pytriton's Triton says
        ready before its models have loaded (explicit model control), so ask each model."""
        if self.name == "triton":
            return [f"/v2/models/{model}/ready" for model in self.models]
        return ["/v2/health/ready"]

    def start(self, timeout_s: float = 120.0) -> None:
        log = self.log_path.open("wb")
        started = time.perf_counter()
        self.process = subprocess.Popen(
            self.command,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **self.env},
            start_new_session=True,
        )
        log.close()
        pending = self.ready_paths()
        with httpx.Client(base_url=self.http_url, timeout=2.0) as client:
            while pending:
                if self.process.poll() is not None:
                    raise RuntimeError(f"{self.name} exited: see {self.log_path}")
                if time.perf_counter() - started > timeout_s:
                    raise TimeoutError(f"{self.name} not ready in {timeout_s} s: {self.log_path}")
                with contextlib.suppress(httpx.HTTPError):
                    if client.get(pending[0]).status_code == 200:
                        pending.pop(0)
                        continue
                time.sleep(0.005)
        self.startup_s = time.perf_counter() - started
        self.rss_ready = rss_bytes(self.pid)
        self.rss_peak = self.rss_ready

    def gc_seconds(self) -> float | None:
        """Seconds spent in garbage collection so far (bench/gc_probe.py), or None."""
        path = self.env.get("GC_PROBE_FILE")
        if not path or self.process is None:
            return None
        before = Path(path).stat().st_mtime_ns if Path(path).exists() else 0
        os.kill(self.pid, signal.SIGUSR1)
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            if Path(path).exists() and Path(path).stat().st_mtime_ns != before:
                with contextlib.suppress(ValueError):
                    return float(sum(json.loads(Path(path).read_text())["seconds"].values()))
            time.sleep(0.01)
        return None

    def sample_rss(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.rss_peak = max(self.rss_peak, rss_bytes(self.pid))

    def stop(self, timeout_s: float = 20.0) -> None:
        """SIGTERM to the server's process group, SIGKILL to it if it lingers."""
        if self.process is None:
            return
        group = self.process.pid  # the group leader: started with start_new_session
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout_s)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # children (tritonserver, stubs) may outlive it
            try:
                os.killpg(group, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)
        if self.process.poll() is None:
            self.process.wait()


def serval(
    repository: Path,
    models: Sequence[str],
    log_dir: Path,
    extra: Sequence[str],
    gc_mode: str = "off",
) -> Server:
    """``gc_mode``: ``off`` runs ``python -m serval``; ``stats`` and ``freeze`` run it through
    bench/gc_probe.py, timing garbage collection (and freezing it after start-up)."""
    http, grpc = free_port(), free_port()
    launcher = ["-m", "serval"] if gc_mode == "off" else [str(BENCH / "gc_probe.py")]
    command = [
        sys.executable,
        *launcher,
        "serve",
        str(repository),
        "--host",
        "127.0.0.1",
        "--http-port",
        str(http),
        "--grpc-port",
        str(grpc),
        "--log-level",
        "warning",
        *extra,
    ]
    env = {}
    if gc_mode != "off":
        env["GC_PROBE_FILE"] = str(log_dir / "serval-gc.json")
        env["GC_PROBE_FREEZE"] = "1" if gc_mode == "freeze" else "0"
    server = Server(
        "serval", command, list(models), ("json", "binary", "grpc"), log_dir / "serval.log", env
    )
    server.http_port, server.grpc_port = http, grpc
    return server


def naive(
    python: str, repository: Path, models: Sequence[str], workers: int, threads: int, log_dir: Path
) -> Server:
    http = free_port()
    command = [
        python,
        "-m",
        "uvicorn",
        "naive_server:app",
        "--app-dir",
        str(BENCH),
        "--host",
        "127.0.0.1",
        "--port",
        str(http),
        "--workers",
        str(workers),
        "--log-level",
        "warning",
        "--no-access-log",
    ]
    env = {
        "NAIVE_REPOSITORY": str(repository),
        "NAIVE_MODELS": ",".join(models),
        "NAIVE_THREADS": str(threads),
    }
    name = f"naive-{workers}w"
    server = Server(name, command, list(models), ("json",), log_dir / f"{name}.log", env)
    server.http_port = http
    return server


def triton(
    python: str,
    repository: Path,
    models: Sequence[str],
    threads: int,
    delay_us: int,
    instances: int,
    log_dir: Path,
) -> Server:
    http, grpc, metrics = free_port(), free_port(), free_port()
    command = [
        python,
        str(BENCH / "pytriton_server.py"),
        str(repository),
        "--models",
        ",".join(models),
        "--http-port",
        str(http),
        "--grpc-port",
        str(grpc),
        "--metrics-port",
        str(metrics),
        "--threads",
        str(threads),
        "--max-queue-delay-us",
        str(delay_us),
        "--instances",
        str(instances),
    ]
    server = Server(
        "triton", command, list(models), ("json", "binary", "grpc"), log_dir / "triton.log"
    )
    server.http_port, server.grpc_port = http, grpc
    return server


# (req/s, server CPU µs per request) of one wrk run
Measured = tuple[float, float]


def interleaved_rounds(
    servers: dict[str, tuple[subprocess.Popen[bytes], int]],
    rounds: int,
    load: Callable[[int], dict[str, int]],
) -> dict[str, list[Measured]]:
    """Drive each server in turn with ``load(port)`` (a wrk run's BENCH_RESULT), the order
    reversed every other round so that drift on a noisy machine hits all alike; print each
    run and return per server its (req/s, CPU µs per request). For A/B benches of servers
    side by side (compare_refs, evaluation_log)."""
    width = max(len(name) for name in servers)
    results: dict[str, list[Measured]] = {name: [] for name in servers}
    for round_index in range(rounds):
        order = list(servers) if round_index % 2 == 0 else list(reversed(servers))
        for name in order:
            process, port = servers[name]
            cpu_before = cpu_seconds(process.pid)
            wrk = load(port)
            per_request = (cpu_seconds(process.pid) - cpu_before) / wrk["requests"]
            rate = wrk["requests"] / (wrk["duration_us"] / 1e6)
            results[name].append((rate, per_request * 1e6))
            print(
                f"{name:{width}} {rate:8,.0f} req/s  p50 {wrk['p50_us'] / 1e3:6.2f} ms  "
                f"p99 {wrk['p99_us'] / 1e3:6.2f} ms  CPU/request {per_request * 1e6:6.1f} µs  "
                f"non-2xx {wrk['non2xx']}",
                flush=True,
            )
    return results


def medians(results: dict[str, list[Measured]]) -> dict[str, Measured]:
    """Per server, the median req/s and the median CPU per request (printed)."""
    width = max(len(name) for name in results)
    found = {}
    for name, measured in results.items():
        rates = sorted(rate for rate, _ in measured)
        cpus = sorted(cpu for _, cpu in measured)
        found[name] = (rates[len(rates) // 2], cpus[len(cpus) // 2])
        print(f"{name:{width}} median {found[name][0]:8,.0f} req/s, {found[name][1]:6.1f} µs CPU")
    return found
