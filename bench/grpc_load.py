"""gRPC load generator: N concurrent streams of unary ``ModelInfer`` calls for a fixed time.

Each of ``--concurrency`` tasks sends the same one-row request (``raw_input_contents``), waits
for the answer, and sends the next, on one shared channel (as wrk keeps N connections busy).
Counts answers, errors (any non-OK status) and the latency of each call; prints one JSON
object with requests/s, percentiles in milliseconds and the errors by status code.

It speaks the Open Inference Protocol (``inference.GRPCInferenceService``) with serval's
generated stubs, so it drives serval and Triton alike. Run it in a process of its own:
``python bench/grpc_load.py 127.0.0.1:8081 --model tiny --features 32 --concurrency 16
--duration 10``. It is one Python process: on a 2-core machine its own CPU use (about
30-60 µs per call) takes cycles from the server, as wrk's does.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import time

import grpc
import numpy as np

from serval.protocols.grpc.generated import grpc_service_pb2 as pb
from serval.protocols.grpc.generated import grpc_service_pb2_grpc as pb_grpc


def request(model: str, row: np.ndarray) -> pb.ModelInferRequest:
    message = pb.ModelInferRequest(model_name=model)
    tensor = message.inputs.add()
    tensor.name = "x"
    tensor.datatype = "FP32"
    tensor.shape.extend(row.shape)
    message.raw_input_contents.append(row.astype(np.float32).tobytes())
    return message


async def drive(
    target: str, message: pb.ModelInferRequest, concurrency: int, duration: float, warmup: float
) -> dict[str, object]:
    latencies: list[float] = []
    errors: collections.Counter[str] = collections.Counter()
    options = [("grpc.max_receive_message_length", 64 << 20)]
    async with grpc.aio.insecure_channel(target, options=options) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        await channel.channel_ready()
        measuring = False
        stop_at = time.perf_counter() + warmup + duration

        async def stream() -> None:
            while (start := time.perf_counter()) < stop_at:
                try:
                    await stub.ModelInfer(message, timeout=30)
                except grpc.aio.AioRpcError as exc:
                    if measuring:
                        errors[exc.code().name] += 1
                    continue
                if measuring:
                    latencies.append(time.perf_counter() - start)

        tasks = [asyncio.create_task(stream()) for _ in range(concurrency)]
        await asyncio.sleep(warmup)
        measuring = True
        began = time.perf_counter()
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - began
    values = np.sort(np.asarray(latencies)) * 1e3 if latencies else np.zeros(1)
    return {
        "requests": len(latencies),
        "seconds": elapsed,
        "rps": len(latencies) / elapsed,
        "p50_ms": float(np.percentile(values, 50)),
        "p90_ms": float(np.percentile(values, 90)),
        "p99_ms": float(np.percentile(values, 99)),
        "errors": sum(errors.values()),
        "error_codes": dict(errors),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", help="host:port of the gRPC server")
    parser.add_argument("--model", required=True)
    parser.add_argument("--features", type=int, required=True, help="columns of the row")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds measured")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds before measuring")
    args = parser.parse_args()
    with contextlib.suppress(ImportError):
        import uvloop  # noqa: PLC0415 - optional

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    row = np.random.default_rng(7).standard_normal((1, args.features)).astype(np.float32)
    result = asyncio.run(
        drive(args.target, request(args.model, row), args.concurrency, args.duration, args.warmup)
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
