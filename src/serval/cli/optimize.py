"""``serval optimize MODEL_DIR``: a thin command over ``serval.tools.optimize``, which applies
ONNX Runtime graph optimization and dynamic INT8 quantization to an ONNX version and writes the
next version; this prints what was done, size, latency and the output difference."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from serval.cli.convert import print_differences
from serval.core.errors import ServalError
from serval.tools.optimize import LEVELS, optimize_version


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
        choices=LEVELS,
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
        result = optimize_version(
            args.model_dir,
            version=args.version,
            output_model=args.output_model,
            level=args.level,
            quantize=args.quantize,
            rows_file=args.rows,
            n_rows=args.n_rows,
            runs=args.runs,
            tolerance=args.tolerance,
        )
    except ServalError as exc:
        print(f"serval optimize: {exc}", file=sys.stderr)
        return 2
    steps = f"graph optimization ({result.level})"
    if result.quantized_weights:
        steps += f" + INT8 quantization ({result.quantized_weights} weight tensors)"
    verb = "checked" if result.unchanged else "optimized"
    print(f"{verb} {result.source}: {steps}")
    if result.quantize and not result.quantized_weights:
        print(
            "INT8 quantization skipped: the model has no MatMul, Gemm or Conv weights to quantize"
        )
    table = [
        ("", "original", "optimized"),
        ("size", f"{result.size_before / 1024:.1f} KiB", f"{result.size_after / 1024:.1f} KiB"),
        *(
            (f"latency, {t.label} (median)", f"{t.before_ms:.3f} ms", f"{t.after_ms:.3f} ms")
            for t in result.latencies
        ),
    ]
    widths = [max(len(row[i]) for row in table) for i in range(3)]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    print_differences(result.differences, result.rows)
    if result.level == "all":
        print("note: level 'all' may tie the saved model to this machine's CPU")
    if result.unchanged:
        print("nothing to optimize: neither step changed the model; nothing was written")
        return 0
    if result.written is None:
        print(
            f"serval optimize: refused: a difference exceeds --tolerance {args.tolerance:g}; "
            f"nothing was written",
            file=sys.stderr,
        )
        return 1
    if result.size_after > result.size_before:
        print(
            f"note: the new version is larger than the original "
            f"({result.size_after / result.size_before - 1:.0%} more)"
        )
    print(f"wrote {result.written}")
    return 0
