"""``serval optimize MODEL_DIR``: ONNX Runtime graph optimization and dynamic INT8 quantization
of an ONNX version, written as the next version, with a report of size, latency and the
output difference against the original."""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from serval.cli.model_versions import (
    CommandError,
    find_version,
    max_differences,
    print_differences,
    sample_rows,
    write_version,
)

_LEVELS = ("basic", "extended", "all")
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


def register(commands: Any, summary: str) -> None:
    parser = commands.add_parser(
        "optimize",
        help=summary,
        description="Apply ONNX Runtime graph optimizations and dynamic INT8 quantization to an "
        "ONNX model version and write the result as the next version, reporting size, "
        "latency and the output difference against the original.",
    )
    parser.add_argument("model_dir", type=Path, help="the model's folder in the repository")
    parser.add_argument("--version", type=int, help="version to optimize (default: the highest)")
    parser.add_argument("--output-model", type=Path, help="model folder to write to")
    parser.add_argument(
        "--level",
        choices=_LEVELS,
        default="extended",
        help="graph optimization level saved (default extended; 'all' may tie the model to "
        "this machine's CPU)",
    )
    parser.add_argument(
        "--no-quantize", dest="quantize", action="store_false", help="graph optimization only"
    )
    parser.add_argument("--rows", type=Path, help=".npy file of sample rows (one-input models)")
    parser.add_argument("--n-rows", type=int, default=64, help="generated rows (default 64)")
    parser.add_argument("--runs", type=int, default=50, help="timed runs each (default 50)")
    parser.add_argument(
        "--tolerance",
        type=float,
        help="refuse (write nothing) when an output differs by more (default: report only)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        return _optimize(args)
    except CommandError as exc:
        print(f"serval optimize: {exc}", file=sys.stderr)
        return 2


def _optimize(args: argparse.Namespace) -> int:
    import onnxruntime as ort  # noqa: PLC0415 - the onnx extra

    source = find_version(args.model_dir, args.version)
    original_path = source.path / "model.onnx"
    if not original_path.is_file():
        raise CommandError(f"{original_path} does not exist; optimize works on ONNX models")
    original = original_path.read_bytes()
    try:
        optimized = _transform(original, args.level, quantize=args.quantize)
        before, after = _session(ort, original), _session(ort, optimized)
    except Exception as exc:  # onnxruntime's errors have no common base class
        raise CommandError(f"onnxruntime failed: {type(exc).__name__}: {exc}") from exc
    feeds = _feeds(before, args.rows, args.n_rows)
    steps = f"graph optimization ({args.level})" + (" + INT8 quantization" if args.quantize else "")
    print(f"optimized {original_path}: {steps}")
    _report(before, after, len(original), len(optimized), feeds, args.runs)
    differences = max_differences(_run(before, feeds), _run(after, feeds))
    print_differences(differences, _rows(feeds))
    worst = max(differences.values(), default=0.0)
    if args.tolerance is not None and not worst <= args.tolerance:
        print(
            f"serval optimize: refused: a difference exceeds --tolerance {args.tolerance:g}; "
            f"nothing was written",
            file=sys.stderr,
        )
        return 1
    written = write_version(args.output_model or args.model_dir, {"model.onnx": optimized})
    print(f"wrote {written / 'model.onnx'}")
    return 0


def _transform(model: bytes, level: str, *, quantize: bool) -> bytes:
    import onnx  # noqa: PLC0415
    import onnxruntime as ort  # noqa: PLC0415
    from onnxruntime.quantization import QuantType, quantize_dynamic  # noqa: PLC0415

    from serval.cli.onnx_export import dedupe_opsets  # noqa: PLC0415

    levels = {
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }
    with tempfile.TemporaryDirectory(prefix="serval-optimize-") as tmp:
        graph = dedupe_opsets(onnx.load_model_from_string(model))
        start = Path(tmp) / "model.onnx"
        if quantize:
            # Quantize the plain graph: the quantizer does not know the fused operators that
            # onnxruntime's optimizations produce. The optimizations then fuse the result.
            quantize_dynamic(
                graph,
                start,
                weight_type=QuantType.QInt8,
                extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
            )
        else:
            onnx.save(graph, start)
        optimized = Path(tmp) / "optimized.onnx"
        options = ort.SessionOptions()
        options.graph_optimization_level = levels[level]
        options.optimized_model_filepath = str(optimized)
        ort.InferenceSession(str(start), options, providers=["CPUExecutionProvider"])
        return optimized.read_bytes()


def _session(ort: Any, model: bytes) -> Any:
    return ort.InferenceSession(model, providers=["CPUExecutionProvider"])


def _feeds(session: Any, rows_file: Path | None, n_rows: int) -> dict[str, np.ndarray]:
    inputs = session.get_inputs()
    if rows_file is not None:
        if len(inputs) != 1:
            raise CommandError("--rows works with one-input models only")
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
        raise CommandError(f"cannot generate sample data for input {node.name!r} ({node.type})")
    return kind


def _run(session: Any, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    names = [output.name for output in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds), strict=True))


def _rows(feeds: dict[str, np.ndarray]) -> int:
    return min((int(v.shape[0]) for v in feeds.values() if v.ndim), default=1)


def _latency_ms(session: Any, feeds: dict[str, np.ndarray], runs: int) -> float:
    for _ in range(3):
        session.run(None, feeds)
    timings = []
    for _ in range(max(runs, 1)):
        started = time.perf_counter()
        session.run(None, feeds)
        timings.append(time.perf_counter() - started)
    return statistics.median(timings) * 1000


def _report(
    before: Any, after: Any, size_before: int, size_after: int, feeds: dict[str, Any], runs: int
) -> None:
    single = {name: value[:1] for name, value in feeds.items()}
    batch = _rows(feeds)
    rows = [
        ("size", f"{size_before / 1024:.1f} KiB", f"{size_after / 1024:.1f} KiB"),
        (
            "latency, 1 row (median)",
            f"{_latency_ms(before, single, runs):.3f} ms",
            f"{_latency_ms(after, single, runs):.3f} ms",
        ),
        (
            f"latency, {batch} rows (median)",
            f"{_latency_ms(before, feeds, runs):.3f} ms",
            f"{_latency_ms(after, feeds, runs):.3f} ms",
        ),
    ]
    table = [("", "original", "optimized"), *rows]
    widths = [max(len(row[i]) for row in table) for i in range(3)]
    for row in table:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
