"""The Triton peer: NVIDIA Triton Inference Server through ``nvidia-pytriton``.

The wheel bundles a real ``tritonserver``; pytriton binds a Python function as a model (Triton's
Python backend, whose stub talks to this process). The bound function runs onnxruntime on the
batch Triton's dynamic batcher formed; ``max_batch_size`` is the same as serval's. The models'
input ``x`` and output ``y`` have the names and shapes of the ONNX graphs, so the V2 requests
that drive serval drive Triton unchanged (REST JSON and binary, gRPC).

Runs in its own venv built from Debian's python3.11 (the bundled Python-backend stub links
``libpython3.11.so`` of Debian):
``/tmp/pytriton-venv/bin/python bench/pytriton_server.py REPOSITORY --models tiny,mlp
--http-port P --grpc-port Q --metrics-port R``.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import onnxruntime as ort
from pytriton.decorators import batch
from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
from pytriton.triton import Triton, TritonConfig

MAX_BATCH_SIZE = {"tiny": 64, "mlp": 128}  # as bench/models.py gives serval


def infer_function(session: ort.InferenceSession):  # pytriton wraps the result
    input_name = session.get_inputs()[0].name
    output_name = session.get_outputs()[0].name

    @batch
    def infer(x: np.ndarray) -> dict[str, np.ndarray]:
        return {output_name: session.run([output_name], {input_name: x})[0]}

    return infer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("repository", type=Path)
    parser.add_argument("--models", default="tiny,mlp")
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--grpc-port", type=int, required=True)
    parser.add_argument("--metrics-port", type=int, required=True)
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime intra_op threads")
    parser.add_argument("--max-queue-delay-us", type=int, default=0)
    parser.add_argument("--instances", type=int, default=1, help="model instances (callables)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    options.inter_op_num_threads = 1
    config = TritonConfig(
        http_address="127.0.0.1",
        http_port=args.http_port,
        grpc_address="127.0.0.1",
        grpc_port=args.grpc_port,
        metrics_address="127.0.0.1",
        metrics_port=args.metrics_port,
        allow_gpu_metrics=False,
        log_verbose=0,
    )
    with Triton(config=config) as triton:
        for name in args.models.split(","):
            session = ort.InferenceSession(
                str(args.repository / name / "1" / "model.onnx"),
                options,
                providers=["CPUExecutionProvider"],
            )
            inputs = session.get_inputs()
            outputs = session.get_outputs()
            triton.bind(
                model_name=name,
                infer_func=[infer_function(session) for _ in range(args.instances)],
                inputs=[Tensor(name=inputs[0].name, dtype=np.float32, shape=(inputs[0].shape[1],))],
                outputs=[
                    Tensor(name=outputs[0].name, dtype=np.float32, shape=(outputs[0].shape[1],))
                ],
                config=ModelConfig(
                    max_batch_size=MAX_BATCH_SIZE[name],
                    batcher=DynamicBatcher(max_queue_delay_microseconds=args.max_queue_delay_us),
                ),
                strict=False,
            )
        triton.serve()


if __name__ == "__main__":
    main()
