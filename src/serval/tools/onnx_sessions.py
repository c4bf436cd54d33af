"""onnxruntime sessions for the tools: quiet, fed with sample data, timed, compared."""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from serval.core.errors import ToolError
from serval.tools.comparison import sample_rows
from serval.tools.quiet import quiet_onnxruntime

_NUMPY_TYPES = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(float16)": np.float16,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
}

Feeds = dict[str, np.ndarray[Any, Any]]


def open_session(model: bytes) -> Any:
    import onnxruntime as ort  # noqa: PLC0415 - the onnx extra

    options = quiet_onnxruntime(ort)
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def interface(session: Any) -> list[str]:
    """Each input and output as ``name type shape``: what a client's requests depend on."""
    nodes = [("input", node) for node in session.get_inputs()]
    nodes += [("output", node) for node in session.get_outputs()]
    return [f"{kind} {node.name} {node.type} {node.shape}" for kind, node in nodes]


def sample_feeds(session: Any, rows_file: Path | None, n_rows: int) -> Feeds:
    inputs = session.get_inputs()
    if rows_file is not None:
        if len(inputs) != 1:
            raise ToolError("--rows works with one-input models only")
        width = _dims(inputs[0].shape, 1)[1:] or [0]
        rows = sample_rows(rows_file, int(np.prod(width)), n_rows)
        return {inputs[0].name: rows.astype(_numpy_type(inputs[0]))}
    rng = np.random.default_rng(0)
    feeds = {}
    for node in inputs:
        shape, kind = _dims(node.shape, n_rows), _numpy_type(node)
        if np.issubdtype(kind, np.floating):
            feeds[node.name] = rng.standard_normal(shape).astype(kind)
        elif kind is np.bool_:
            feeds[node.name] = rng.integers(0, 2, shape).astype(bool)
        else:
            feeds[node.name] = rng.integers(0, 10, shape).astype(kind)
    return feeds


def _dims(shape: list[Any], batch: int) -> list[int]:
    """Variable dimensions: the first is the batch, the others 1."""
    return [
        dim if isinstance(dim, int) and dim > 0 else (batch if index == 0 else 1)
        for index, dim in enumerate(shape)
    ]


def _numpy_type(node: Any) -> Any:
    kind = _NUMPY_TYPES.get(node.type)
    if kind is None:
        raise ToolError(f"cannot generate sample data for input {node.name!r} ({node.type})")
    return kind


def run_all(session: Any, feeds: Feeds) -> Feeds:
    names = [output.name for output in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds), strict=True))


def batch_rows(feeds: Feeds) -> int:
    return min((int(v.shape[0]) for v in feeds.values() if v.ndim), default=1)


def median_latency_ms(session: Any, feeds: Feeds, runs: int) -> float:
    for _ in range(3):
        session.run(None, feeds)
    timings = []
    for _ in range(max(runs, 1)):
        started = time.perf_counter()
        session.run(None, feeds)
        timings.append(time.perf_counter() - started)
    return statistics.median(timings) * 1000
