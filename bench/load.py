"""The load generators, each run as a separate process: wrk (REST) and bench/grpc_load.py (gRPC).

Every run sends single-row requests of one model on N concurrent connections for a fixed time
and returns a ``Load``: requests/s, latency percentiles, errors. wrk uses bench/v2_infer.lua with
a body written here: V2 JSON, or the binary tensor data extension (a JSON header, then the
row's raw little-endian bytes).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent


@dataclass
class Load:
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    errors: int  # non-2xx answers (REST) or non-OK statuses (gRPC)
    socket_errors: int  # wrk: connect, read, write and timeout errors
    detail: str = ""
    client_cpu_s: float = 0.0  # CPU time of the load generator process


def _run(command: list[str], env: dict[str, str] | None, timeout: float) -> tuple[str, float]:
    """Run a load generator; its stdout and the CPU seconds it used."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=timeout, check=True
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return done.stdout, cpu


def json_body(row: np.ndarray) -> bytes:
    data = ",".join(str(value) for value in row.astype(np.float32).ravel())  # shortest form
    return (
        f'{{"inputs":[{{"name":"x","shape":[1,{row.shape[1]}],"datatype":"FP32","data":[{data}]}}]}}'
    ).encode()


def binary_body(row: np.ndarray) -> tuple[bytes, int]:
    """The binary tensor data extension: JSON header, then raw bytes; and the header length.
    The output comes back binary too."""
    raw = row.astype("<f4").tobytes()
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "x",
                    "shape": list(row.shape),
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": len(raw)},
                }
            ],
            "outputs": [{"name": "y", "parameters": {"binary_data": True}}],
        },
        separators=(",", ":"),
    ).encode()
    return header + raw, len(header)


def write_bodies(folder: Path, model: str, row: np.ndarray) -> dict[str, tuple[Path, int]]:
    """The request bodies of ``model`` for wrk: protocol -> (file, binary header length)."""
    folder.mkdir(parents=True, exist_ok=True)
    json_file = folder / f"{model}.json"
    json_file.write_bytes(json_body(row))
    body, header_len = binary_body(row)
    binary_file = folder / f"{model}.bin"
    binary_file.write_bytes(body)
    return {"json": (json_file, 0), "binary": (binary_file, header_len)}


def wrk(url: str, model: str, body: tuple[Path, int], connections: int, seconds: float) -> Load:
    """One wrk run: 1 thread (the machine has 2 cores), ``connections`` connections."""
    env = {
        **os.environ,
        "BENCH_PATH": f"/v2/models/{model}/infer",
        "BENCH_BODY": str(body[0]),
        "BENCH_HEADER_LEN": str(body[1]) if body[1] else "",
    }
    command = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "-s",
        str(BENCH / "v2_infer.lua"),
        url,
    ]
    stdout, cpu = _run(command, env, seconds + 60)
    line = next(x for x in stdout.splitlines() if x.startswith("BENCH_RESULT "))
    result = json.loads(line.removeprefix("BENCH_RESULT "))
    seconds_run = result["duration_us"] / 1e6
    return Load(
        requests=result["requests"],
        seconds=seconds_run,
        rps=result["requests"] / seconds_run,
        p50_ms=result["p50_us"] / 1e3,
        p90_ms=result["p90_us"] / 1e3,
        p99_ms=result["p99_us"] / 1e3,
        errors=result["non2xx"],
        socket_errors=result["connect"] + result["read"] + result["write"] + result["timeout"],
        client_cpu_s=cpu,
    )


def grpc(target: str, model: str, features: int, connections: int, seconds: float) -> Load:
    """One run of bench/grpc_load.py in a process of its own (1 s of warm-up first)."""
    command = [
        sys.executable,
        str(BENCH / "grpc_load.py"),
        target,
        "--model",
        model,
        "--features",
        str(features),
        "--concurrency",
        str(connections),
        "--duration",
        str(seconds),
        "--warmup",
        "1",
    ]
    stdout, cpu = _run(command, None, seconds + 60)
    result = json.loads(stdout.strip().splitlines()[-1])
    return Load(
        requests=result["requests"],
        seconds=result["seconds"],
        rps=result["rps"],
        p50_ms=result["p50_ms"],
        p90_ms=result["p90_ms"],
        p99_ms=result["p99_ms"],
        errors=result["errors"],
        socket_errors=0,
        detail=json.dumps(result["error_codes"]) if result["error_codes"] else "",
        client_cpu_s=cpu,
    )
