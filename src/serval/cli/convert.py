"""``serval convert MODEL_DIR``: a scikit-learn, XGBoost, LightGBM, TensorFlow or PyTorch
version -> ONNX.

A thin command over ``serval.tools.convert``: the ONNX model is written as the next version of
the model (or of ``--output-model``) only when it serves the same requests and its outputs match
the native model's on sample rows within ``--tolerance``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from serval.core.errors import ServalError


def register(commands: Any, summary: str) -> None:
    parser = commands.add_parser(
        "convert",
        help=summary,
        description="Convert a model version to ONNX and write it as the next version, after "
        "checking that it accepts the same requests and gives the same outputs on sample rows.",
    )
    parser.add_argument("model_dir", type=Path, help="the model's folder in the repository")
    parser.add_argument("--version", type=int, help="version to convert (default: the highest)")
    parser.add_argument(
        "--output-model",
        type=Path,
        help="model folder to write the ONNX version to (default: MODEL_DIR)",
    )
    parser.add_argument(
        "--rows",
        type=Path,
        help=".npy file of rows to check: [n, n_features], or the shape of a tensor model's "
        "one input",
    )
    parser.add_argument("--n-rows", type=int, default=256, help="generated rows (default 256)")
    parser.add_argument(
        "--tolerance",
        type=float,
        default=1e-4,
        help="largest absolute difference allowed on any output (default 1e-4)",
    )
    parser.add_argument("--opset", type=int, help="ONNX opset (default: the converter's)")
    parser.add_argument(
        "--signature",
        help="a TensorFlow model's signature to convert (default: serving_default); a model "
        "with several signatures is converted into another model (--output-model)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from serval.tools.convert import convert_version  # noqa: PLC0415 - loads runtimes

    try:
        result = convert_version(
            args.model_dir,
            version=args.version,
            output_model=args.output_model,
            rows_file=args.rows,
            n_rows=args.n_rows,
            tolerance=args.tolerance,
            opset=args.opset,
            signature=args.signature,
        )
    except ServalError as exc:
        print(f"serval convert: {exc}", file=sys.stderr)
        return 2
    print(f"converted {result.source.path} ({result.runtime}) to ONNX")
    print_differences(result.differences, result.rows)
    if result.written is None:
        print(
            f"serval convert: refused: a difference exceeds --tolerance {args.tolerance:g}; "
            f"nothing was written",
            file=sys.stderr,
        )
        return 1
    print(f"wrote {result.written}")
    return 0


def print_differences(differences: Mapping[str, float], rows: int) -> None:
    print(f"max absolute difference on {rows} rows:")
    width = max((len(name) for name in differences), default=0)
    for name, value in differences.items():
        shown = "labels differ" if value == float("inf") else f"{value:.3g}"
        print(f"  {name.ljust(width)}  {shown}")
