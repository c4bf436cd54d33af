"""What a sticky traffic policy costs per request, in-process and with little noise.

bench/rollout.py measures throughput with wrk, where a 50/50 split also halves each version's
batches and the load generator shares the machine. This isolates the policy's own work: the
REST application (``app.build(...)``'s ASGI app, no sockets) of two repositories holding the
``tiny`` bench model as versions 1 and 2, one without a traffic policy, one with
``routes: {"1": 50, "2": 50}`` (or the routes given) and ``sticky: {header: x-user-id}``;
sequential one-row V2 JSON requests, each with its own x-user-id; the event loop thread's CPU
time per request (``time.thread_time``: where the sticky header is read, the version chosen
and the request record accounted). Shuffled short batches; the 5th and 25th percentiles are
the steadiest numbers on a shared machine (noise only ever adds time).

Usage: python bench/rollout_cost.py [batches] [requests per batch] [routes, as JSON]
(routes '{"1": 1, "2": 99}' keeps the policy's work per request but sends nearly every request
to one version, as without a policy: what is left is the policy's own cost.)
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))

from bench.models import single_row  # noqa: E402
from bench.rollout import ROUTES, policy, repository  # noqa: E402
from serval.app import build  # noqa: E402
from serval.config import Settings  # noqa: E402

PATH = "/v2/models/tiny/infer"


def body() -> bytes:
    row = single_row("tiny")
    doc = {"inputs": [{"name": "x", "datatype": "FP32", "shape": list(row.shape)}]}
    doc["inputs"][0]["data"] = row.ravel().tolist()
    return json.dumps(doc).encode()


async def batch(app: Any, requests: int, first_user: int, payload: bytes) -> float:
    """Loop thread CPU µs per request over ``requests`` sequential requests."""

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": payload, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start" and message["status"] != 200:
            raise RuntimeError(f"status {message['status']}")

    scopes = [
        {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": PATH,
            "raw_path": PATH.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": [
                (b"host", b"127.0.0.1"),
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                (b"x-user-id", f"user-{first_user + i}".encode()),
            ],
            "client": ("127.0.0.1", 40000),
            "server": ("127.0.0.1", 8080),
        }
        for i in range(requests)
    ]
    started = time.thread_time()
    for scope in scopes:
        await app(scope, receive, send)
    return (time.thread_time() - started) / requests * 1e6


async def main(batches: int, requests: int, routes: str) -> None:
    payload = body()
    with tempfile.TemporaryDirectory() as temp:
        servers = {
            name: build(
                Settings(model_repository=repository(Path(temp) / name, traffic), grpc_port=0)
            )
            for name, traffic in (("none", ""), ("policy", policy(routes)))
        }
        for server in servers.values():
            await server._manager.start()
        for server in servers.values():
            await batch(server._rest_app, 500, 0, payload)  # warm up
        results: dict[str, list[float]] = {name: [] for name in servers}
        names = list(servers)
        for index in range(batches):
            random.shuffle(names)
            for name in names:
                app = servers[name]._rest_app
                results[name].append(await batch(app, requests, index * requests, payload))
        summary = {}
        for name, values in results.items():
            values.sort()
            summary[name] = (values[len(values) // 20], values[len(values) // 4])
            print(
                f"{name:7} loop thread CPU per request: p5 {summary[name][0]:6.1f} µs, "
                f"p25 {summary[name][1]:6.1f} µs"
            )
        (a5, a25), (b5, b25) = summary["policy"], summary["none"]
        print(
            f"policy vs none: {a5 - b5:+.1f} µs ({100 * (a5 - b5) / b5:+.1f}%) at p5, "
            f"{a25 - b25:+.1f} µs ({100 * (a25 - b25) / b25:+.1f}%) at p25"
        )
        for server in servers.values():
            await server._manager.stop()


if __name__ == "__main__":
    asyncio.run(
        main(
            int(sys.argv[1]) if len(sys.argv) > 1 else 100,
            int(sys.argv[2]) if len(sys.argv) > 2 else 200,
            sys.argv[3] if len(sys.argv) > 3 else ROUTES,
        )
    )
