"""What a pipeline step costs, in-process and with little noise: CPU per request of ``tiny``,
a one-step and a two-step pipeline of it, and the floor a two-step pipeline can reach.

Builds the server of ``bench/composition.py``'s part (a) (``tiny`` with the batching of
``bench/models.py``, ``tiny1``: a one-step pipeline of it, ``tiny2``: a two-step one) with
``app.build`` and drives its REST application directly (no sockets, no load generator) with
``--clients`` concurrent clients, each sending one-row V2 JSON requests one after another. So
the model's queue batches as it does under wrk at that many connections. Variants:

- ``tiny``, ``tiny1``, ``tiny2``: requests to that model;
- ``tiny+call``: a request to ``tiny``, then the same row sent straight to ``tiny``'s servable
  (leased from the manager, as a step leases it): one HTTP request and two batched calls, what
  a two-step pipeline has to do at the least. ``tiny`` over ``tiny+call`` is the ceiling of
  the two-step pipeline's ratio when the server is bound by its CPU.
- ``tiny+infer``: the same, the second call through the data plane (``DataPlane.infer``:
  routing, lease, request check, statistics and the request's record), as an in-process
  caller would make it.

For each variant, many short batches in shuffled order; per request, the event loop thread's
CPU time (``time.thread_time``: where HTTP, decoding, batching and composition run) and the
whole process's (``time.process_time``: the instance thread too). Reported: the 5th and 25th
percentiles of the batches (noise only ever adds time on a shared machine) and, in the last
column, the ratio ``tiny`` / variant of the process CPU at p25 (the throughput ratio a
CPU-bound server would show). The loop is uvloop's where it is installed, as in ``serval
serve``.

``--profile VARIANT`` runs only that variant under cProfile and prints the top functions.

Usage: python bench/composition_cost.py [--batches 60] [--requests 640] [--clients 64]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import random
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

import numpy as np

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))

from bench.composition import ONE_STEP, PIPELINE  # noqa: E402
from bench.models import single_row, write_repository  # noqa: E402
from serval.app import build  # noqa: E402
from serval.config import Settings  # noqa: E402
from serval.core.dataplane import DataPlane, ServerMetadata  # noqa: E402
from serval.core.events import EventBus  # noqa: E402
from serval.core.tensors.datatypes import DataType  # noqa: E402
from serval.core.types import InferenceRequest, Tensor  # noqa: E402

ROW = single_row("tiny")
BODY = (
    b'{"inputs":[{"name":"x","shape":[1,32],"datatype":"FP32","data":['
    + ",".join(repr(float(v)) for v in ROW[0]).encode()
    + b"]}]}"
)


def scope(model: str) -> dict[str, Any]:
    path = f"/v2/models/{model}/infer"
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
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


async def receive() -> dict[str, Any]:
    return {"type": "http.request", "body": BODY, "more_body": False}


async def send(message: dict[str, Any]) -> None:
    if message["type"] == "http.response.start" and message["status"] != 200:
        raise RuntimeError(f"status {message['status']}")


Request = Callable[[], Awaitable[None]]


def variants(server: Any) -> dict[str, Request]:
    app = server._rest_app
    manager = server._manager

    def rest(model: str) -> Request:
        template = scope(model)

        async def one() -> None:
            await app(dict(template), receive, send)

        return one

    tiny = rest("tiny")

    async def tiny_and_call() -> None:
        await tiny()
        lease = manager.lease("tiny")
        try:
            request = InferenceRequest("tiny", [Tensor("x", DataType.FP32, np.array(ROW))])
            await lease.servable.predict(request)
        finally:
            lease.release()

    # The data plane's own path (routing, lease, check, statistics, record), without HTTP.
    plane = DataPlane(manager, EventBus(), ServerMetadata("serval", "bench", ()))

    async def tiny_and_infer() -> None:
        await tiny()
        request = InferenceRequest("tiny", [Tensor("x", DataType.FP32, np.array(ROW))])
        await plane.infer(request)

    return {
        "tiny": tiny,
        "tiny1": rest("tiny1"),
        "tiny2": rest("tiny2"),
        "tiny+call": tiny_and_call,
        "tiny+infer": tiny_and_infer,
    }


async def batch(one: Request, requests: int, clients: int) -> tuple[float, float]:
    """Loop thread and process CPU µs per request over ``requests`` requests sent by
    ``clients`` concurrent clients."""
    each = requests // clients

    async def client() -> None:
        for _ in range(each):
            await one()

    thread, process = time.thread_time(), time.process_time()
    await asyncio.gather(*[client() for _ in range(clients)])
    done = each * clients
    return (
        (time.thread_time() - thread) / done * 1e6,
        (time.process_time() - process) / done * 1e6,
    )


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run(args: argparse.Namespace, repository: Path) -> None:
    server = build(Settings(model_repository=repository, grpc_port=0))
    await server._manager.start()
    try:
        chosen = variants(server)
        for one in chosen.values():  # warm up: first-call paths, plans, caches
            await batch(one, 4 * args.clients, args.clients)
        if args.profile:
            profiler = cProfile.Profile()
            profiler.enable()
            for _ in range(args.batches):
                await batch(chosen[args.profile], args.requests, args.clients)
            profiler.disable()
            pstats.Stats(profiler).sort_stats("tottime").print_stats(40)
            return
        samples: dict[str, list[tuple[float, float]]] = {name: [] for name in chosen}
        order = list(chosen)
        for _ in range(args.batches):
            random.shuffle(order)
            for name in order:
                samples[name].append(await batch(chosen[name], args.requests, args.clients))
    finally:
        await server._manager.stop()
    print(
        f"{args.batches} batches x {args.requests} requests, {args.clients} clients; "
        f"CPU per request (µs)"
    )
    print(f"{'variant':<10} {'loop p5':>8} {'loop p25':>8} {'proc p5':>8} {'proc p25':>8} ratio")
    rows = {}
    for name, values in samples.items():
        loop = [value[0] for value in values]
        process = [value[1] for value in values]
        rows[name] = [percentile(v, q) for v in (loop, process) for q in (0.05, 0.25)]
    for name, (l5, l25, p5, p25) in rows.items():
        ratio = rows["tiny"][3] / p25
        print(f"{name:<10} {l5:8.1f} {l25:8.1f} {p5:8.1f} {p25:8.1f} {ratio:5.2f}")


def write(folder: Path) -> Path:
    """The repository under ``folder``: ``tiny`` (bench/models.py's batching), ``tiny1`` and
    ``tiny2`` (bench/composition.py's pipelines)."""
    repository = write_repository(folder / "repository", ["tiny"], 1, 1024)
    for name, text in (("tiny1", ONE_STEP), ("tiny2", PIPELINE)):
        (repository / name).mkdir()
        (repository / name / "model.yaml").write_text(text)
    return repository


def run_loop(main: Coroutine[Any, Any, None]) -> None:
    """Run ``main`` on the loop ``serval serve`` uses: uvloop where it is installed."""
    try:
        import uvloop  # noqa: PLC0415 - optional, as in serval.cli.serve
    except ImportError:
        asyncio.run(main)
    else:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(main)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=60)
    parser.add_argument("--requests", type=int, default=640, help="requests per batch")
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--profile", help="profile this variant with cProfile instead")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temp:
        run_loop(run(args, write(Path(temp))))


if __name__ == "__main__":
    main()
