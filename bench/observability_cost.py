"""What metrics and request ids cost per request, in-process and with little noise.

Drives the REST application (`app.build(...)`'s ASGI app, no sockets) with one-row V2 JSON
requests to the bundled `classifier`, and measures the event loop thread's CPU time per
request (`time.thread_time`: the loop is where decoding, encoding, metrics and logging run,
and what bounds an overhead-bound server). Four variants, built side by side and measured in
shuffled order, many short batches each; the 5th and 25th percentiles of the batches are the
steadiest numbers on a shared machine (noise only ever adds time):

- `defaults`: metrics on, access log off, tracing off (as `serval serve`);
- `no-metrics`: `--no-metrics`;
- `bare`: `--no-metrics`, and request ids replaced by a constant: no observability at all.

Usage: python bench/observability_cost.py [batches] [requests per batch]
Complements bench/observability_overhead.sh (wrk against real servers), whose numbers carry
the noise of the load generator sharing the machine.
"""

from __future__ import annotations

import asyncio
import random
import sys
import time
from pathlib import Path
from typing import Any

from serval.app import build
from serval.config import Settings
from serval.observability.logging import RequestLogContext, begin_request
from serval.protocols.rest import v2_infer

BODY = b'{"inputs":[{"name":"features","shape":[1,4],"datatype":"FP32","data":[5.1,3.5,1.4,0.2]}]}'
SCOPE = {
    "type": "http",
    "asgi": {"version": "3.0"},
    "http_version": "1.1",
    "method": "POST",
    "scheme": "http",
    "path": "/v2/models/classifier/infer",
    "raw_path": b"/v2/models/classifier/infer",
    "query_string": b"",
    "root_path": "",
    "headers": [
        (b"host", b"127.0.0.1"),
        (b"content-type", b"application/json"),
        (b"content-length", str(len(BODY)).encode()),
    ],
    "client": ("127.0.0.1", 40000),
    "server": ("127.0.0.1", 8080),
}


def constant_request(given_id: str | None = None) -> RequestLogContext:
    """No request id work: what ``bare`` puts in place of ``begin_request``."""
    return _CONSTANT


_CONSTANT = RequestLogContext("bench")


async def batch(app: Any, requests: int) -> float:
    """Loop thread CPU µs per request over ``requests`` sequential requests."""

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": BODY, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start" and message["status"] != 200:
            raise RuntimeError(f"status {message['status']}")

    started = time.thread_time()
    for _ in range(requests):
        await app(dict(SCOPE), receive, send)
    return (time.thread_time() - started) / requests * 1e6


async def main(batches: int, requests: int) -> None:
    repository = Path(__file__).resolve().parent.parent / "examples" / "models"
    servers = {
        name: build(Settings(model_repository=repository, grpc_port=0, **settings))
        for name, settings in (("defaults", {}), ("no-metrics", {"metrics": False}))
    }
    bare_server = build(Settings(model_repository=repository, grpc_port=0, metrics=False))
    for server in (*servers.values(), bare_server):
        await server._manager.start()
    apps = {name: server._rest_app for name, server in servers.items()}
    apps["bare"] = bare_server._rest_app
    for app in apps.values():
        await batch(app, 500)  # warm up
    results: dict[str, list[float]] = {name: [] for name in apps}
    names = list(apps)
    for _ in range(batches):
        random.shuffle(names)
        for name in names:
            # The inference endpoint binds each request's log context with begin_request.
            v2_infer.begin_request = constant_request if name == "bare" else begin_request  # type: ignore[assignment]
            results[name].append(await batch(apps[name], requests))
    v2_infer.begin_request = begin_request  # type: ignore[assignment]
    summary = {}
    for name, values in results.items():
        values.sort()
        summary[name] = (values[len(values) // 20], values[len(values) // 4])
        print(
            f"{name:10} loop thread CPU per request: p5 {summary[name][0]:6.1f} µs, "
            f"p25 {summary[name][1]:6.1f} µs"
        )
    for a, b in (("defaults", "no-metrics"), ("no-metrics", "bare"), ("defaults", "bare")):
        (a5, a25), (b5, b25) = summary[a], summary[b]
        print(
            f"{a} vs {b}: {a5 - b5:+.1f} µs ({100 * (a5 - b5) / b5:+.1f}%) at p5, "
            f"{a25 - b25:+.1f} µs ({100 * (a25 - b25) / b25:+.1f}%) at p25"
        )
    for server in (*servers.values(), bare_server):
        await server._manager.stop()


if __name__ == "__main__":
    asyncio.run(
        main(
            int(sys.argv[1]) if len(sys.argv) > 1 else 250,
            int(sys.argv[2]) if len(sys.argv) > 2 else 200,
        )
    )
