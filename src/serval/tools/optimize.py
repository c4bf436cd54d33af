"""Optimize an ONNX version (ONNX Runtime graph optimizations, dynamic INT8 quantization of
the weights) and write it as the next version.

It says what it did, and only that: quantization that finds no weight to quantize (tree
ensembles, linear models stored as ``ai.onnx.ml`` operators) is reported as skipped, and a
model that neither step changed is not written again as a new, "optimized" version.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from serval.core.errors import ToolError
from serval.tools.comparison import max_differences
from serval.tools.onnx_sessions import (
    batch_rows,
    interface,
    median_latency_ms,
    open_session,
    run_all,
    sample_feeds,
)
from serval.tools.quiet import quiet_converters
from serval.tools.versions import find_version, write_version

LEVELS = ("basic", "extended", "all")
_INT8_TYPES = (2, 3)  # onnx.TensorProto.UINT8, INT8


@dataclass(frozen=True, slots=True)
class Latency:
    label: str
    before_ms: float
    after_ms: float


@dataclass(frozen=True, slots=True)
class Optimization:
    """What ``optimize_version`` did. ``quantized_weights``: weights stored as INT8 (0 when
    quantization was skipped or found nothing); ``written`` is None when nothing was written
    (``unchanged``, or an output differed by more than the tolerance)."""

    source: Path
    level: str
    quantize: bool
    quantized_weights: int
    unchanged: bool
    size_before: int
    size_after: int
    latencies: tuple[Latency, ...]
    rows: int
    differences: dict[str, float]
    written: Path | None

    @property
    def worst(self) -> float:
        return max(self.differences.values(), default=0.0)


def optimize_version(
    model_dir: Path,
    *,
    version: int | None = None,
    output_model: Path | None = None,
    level: str = "extended",
    quantize: bool = True,
    rows_file: Path | None = None,
    n_rows: int = 64,
    runs: int = 50,
    tolerance: float | None = None,
) -> Optimization:
    """Optimize a version of ``model_dir`` (the highest by default) into the next version of
    ``output_model`` (default ``model_dir``). Raises ``ToolError`` when it cannot."""
    if level not in LEVELS:
        raise ToolError(f"level {level!r}: expected one of {', '.join(LEVELS)}")
    source = find_version(model_dir, version)
    original_path = source.path / "model.onnx"
    if not original_path.is_file():
        raise ToolError(f"{original_path} does not exist; optimize works on ONNX models")
    original = original_path.read_bytes()
    try:
        optimized, quantized_weights, unchanged = _transform(original, level, quantize=quantize)
        before, after = open_session(original), open_session(optimized)
    except ToolError:
        raise
    except Exception as exc:  # onnxruntime's errors have no common base class
        raise ToolError(f"onnxruntime failed: {type(exc).__name__}: {exc}") from exc
    if interface(before) != interface(after):
        raise ToolError(
            f"the optimized model's inputs or outputs would differ ({interface(after)} instead "
            f"of {interface(before)}); nothing was written"
        )
    feeds = sample_feeds(before, rows_file, n_rows)
    single = {name: value[:1] for name, value in feeds.items()}
    latencies = (
        Latency("1 row", *(median_latency_ms(s, single, runs) for s in (before, after))),
        Latency(
            f"{batch_rows(feeds)} rows",
            *(median_latency_ms(s, feeds, runs) for s in (before, after)),
        ),
    )
    differences = max_differences(run_all(before, feeds), run_all(after, feeds))
    worst = max(differences.values(), default=0.0)
    refused = tolerance is not None and not worst <= tolerance
    written = None
    if not unchanged and not refused:
        target = output_model or model_dir
        written = write_version(target, {"model.onnx": optimized}) / "model.onnx"
    return Optimization(
        original_path,
        level,
        quantize,
        quantized_weights,
        unchanged,
        len(original),
        len(optimized),
        latencies,
        batch_rows(feeds),
        differences,
        written,
    )


def _transform(model: bytes, level: str, *, quantize: bool) -> tuple[bytes, int, bool]:
    """(the optimized model, how many weights were quantized, whether nothing changed)."""
    import onnx  # noqa: PLC0415 - the onnx extra
    import onnxruntime as ort  # noqa: PLC0415

    from serval.tools.onnx_export import dedupe_opsets  # noqa: PLC0415
    from serval.tools.quiet import quiet_onnxruntime  # noqa: PLC0415

    levels = {
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }
    graph = dedupe_opsets(onnx.load_model_from_string(model))
    with tempfile.TemporaryDirectory(prefix="serval-optimize-") as tmp:
        start = Path(tmp) / "model.onnx"
        onnx.save(graph, start)
        quantized = Path(tmp) / "quantized.onnx"
        quantized_weights = _quantize(start, quantized) if quantize else 0
        if quantized_weights:
            start = quantized
        optimized = Path(tmp) / "optimized.onnx"
        options = quiet_onnxruntime(ort)
        options.graph_optimization_level = levels[level]
        options.optimized_model_filepath = str(optimized)
        ort.InferenceSession(str(start), options, providers=["CPUExecutionProvider"])
        result = optimized.read_bytes()
    unchanged = not quantized_weights and _ops(onnx.load_model_from_string(result)) == _ops(graph)
    return result, quantized_weights, unchanged


def _quantize(plain: Path, target: Path) -> int:
    """Quantize the model in ``plain`` into ``target``; the number of INT8 weights it gained.

    The plain graph is quantized: the quantizer does not know the fused operators that
    onnxruntime's optimizations produce (they then fuse the quantized graph).
    """
    import onnx  # noqa: PLC0415
    from onnxruntime.quantization import QuantType, quantize_dynamic  # noqa: PLC0415

    with quiet_converters():
        quantize_dynamic(
            plain,
            target,
            weight_type=QuantType.QInt8,
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    return _int8_weights(onnx.load(target)) - _int8_weights(onnx.load(plain))


def _int8_weights(model: Any) -> int:
    return sum(1 for tensor in model.graph.initializer if tensor.data_type in _INT8_TYPES)


def _ops(model: Any) -> list[str]:
    return sorted(node.op_type for node in model.graph.node)
