"""The physical limit: rows/s of onnxruntime called in-process, batch by batch, no server.

One session per model with the same ``intra_op_num_threads`` the servers get; for each batch
size, ``session.run`` in a loop for a fixed time. The best rows/s over the batch sizes is the
ceiling that a server on this machine approaches by batching single-row requests.

Run alone: ``python bench/limit.py --model mlp --seconds 1``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64, 128)


def session(path: Path, intra_op_threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def rows_per_second(sess: ort.InferenceSession, batch: np.ndarray, seconds: float) -> float:
    """Rows/s of ``sess.run`` on ``batch`` in a loop of ``seconds`` (after a short warm-up)."""
    name = sess.get_inputs()[0].name
    for _ in range(3):
        sess.run(None, {name: batch})
    runs = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        sess.run(None, {name: batch})
        runs += 1
        now = time.perf_counter()
        if now >= deadline:
            break
    return runs * batch.shape[0] / (now - start)


def measure(
    path: Path, intra_op_threads: int, seconds: float, max_batch: int = 128
) -> dict[int, float]:
    """Rows/s at each batch size up to ``max_batch``."""
    sess = session(path, intra_op_threads)
    features = sess.get_inputs()[0].shape[1]
    rng = np.random.default_rng(0)
    return {
        size: rows_per_second(
            sess, rng.standard_normal((size, features)).astype(np.float32), seconds
        )
        for size in BATCH_SIZES
        if size <= max_batch
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("onnx", type=Path, help="model.onnx")
    parser.add_argument("--threads", type=int, default=1, help="intra_op_num_threads")
    parser.add_argument("--seconds", type=float, default=1.0, help="per batch size")
    args = parser.parse_args()
    print(json.dumps(measure(args.onnx, args.threads, args.seconds)))


if __name__ == "__main__":
    main()
