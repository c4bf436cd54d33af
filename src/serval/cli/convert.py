"""``serval convert MODEL_DIR``: a scikit-learn, XGBoost or LightGBM version -> ONNX.

The ONNX model is written as the next version of the model (or of ``--output-model``) only
when its outputs match the native model's on sample rows within ``--tolerance``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

from serval.cli.model_versions import (
    CommandError,
    SourceVersion,
    find_version,
    max_differences,
    print_differences,
    sample_rows,
    write_version,
)
from serval.core.errors import ServalError
from serval.core.lifecycle.loader import LoadRequest
from serval.core.types import InferenceRequest, Tensor
from serval.runtimes.registry import RuntimeRegistry, import_loader_class
from serval.runtimes.tabular import TabularPredictor

CONVERTIBLE = ("sklearn", "xgboost", "lightgbm")


def register(commands: Any, summary: str) -> None:
    parser = commands.add_parser(
        "convert",
        help=summary,
        description="Convert a model version to ONNX and write it as the next version, after "
        "checking that both give the same outputs on sample rows.",
    )
    parser.add_argument("model_dir", type=Path, help="the model's folder in the repository")
    parser.add_argument("--version", type=int, help="version to convert (default: the highest)")
    parser.add_argument(
        "--output-model",
        type=Path,
        help="model folder to write the ONNX version to (default: MODEL_DIR)",
    )
    parser.add_argument("--rows", type=Path, help=".npy file of rows [n, n_features] to check")
    parser.add_argument("--n-rows", type=int, default=256, help="generated rows (default 256)")
    parser.add_argument(
        "--tolerance",
        type=float,
        default=1e-4,
        help="largest absolute difference allowed on any output (default 1e-4)",
    )
    parser.add_argument("--opset", type=int, help="ONNX opset (default: the converter's)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        return _convert(args)
    except (CommandError, ServalError) as exc:
        print(f"serval convert: {exc}", file=sys.stderr)
        return 2


def _convert(args: argparse.Namespace) -> int:
    source = find_version(args.model_dir, args.version)
    target_dir = args.output_model or args.model_dir
    if target_dir.resolve() == args.model_dir.resolve():
        _check_spec_fits_onnx(source)
    try:
        from serval.cli.onnx_export import export_onnx  # noqa: PLC0415 - the convert extra
    except ImportError as exc:
        raise CommandError(
            f"{exc.name} is missing; install the converters with: pip install 'serval[convert]'"
        ) from exc
    runtime, native = _load_native(source)
    try:
        spec = native.metadata.inputs[0]
        n_features = spec.shape[1] if len(spec.shape) == 2 else -1
        if n_features < 1:
            raise CommandError("the model does not say how many features it takes")
        proto = export_onnx(runtime, native.model, n_features, native.metadata.outputs, args.opset)
        rows = sample_rows(args.rows, n_features, args.n_rows).astype(np.float32)
        expected = _native_outputs(native, rows)
    finally:
        native.close()
    actual = _onnx_outputs(proto.SerializeToString(), rows)
    differences = max_differences(expected, actual)
    print(f"converted {source.path} ({runtime}) to ONNX")
    print_differences(differences, len(rows))
    worst = max(differences.values(), default=0.0)
    if not worst <= args.tolerance:
        print(
            f"serval convert: refused: a difference exceeds --tolerance {args.tolerance:g}; "
            f"nothing was written",
            file=sys.stderr,
        )
        return 1
    written = write_version(target_dir, {"model.onnx": proto.SerializeToString()})
    print(f"wrote {written / 'model.onnx'}")
    return 0


def _check_spec_fits_onnx(source: SourceVersion) -> None:
    """model.yaml applies to every version: settings for the native runtime would break the
    ONNX version."""
    spec = source.spec
    clashing = [
        key
        for key, value in (
            ("runtime", spec.runtime not in (None, "onnx")),
            ("runtime_options", bool(spec.runtime_options)),
            ("inputs", bool(spec.inputs)),
            ("outputs", bool(spec.outputs)),
        )
        if value
    ]
    if clashing:
        raise CommandError(
            f"{source.model_dir / 'model.yaml'} sets {', '.join(clashing)} for the native "
            f"runtime, which would apply to the ONNX version too; write it to another model "
            f"with --output-model FOLDER"
        )


def _load_native(source: SourceVersion) -> tuple[str, TabularPredictor]:
    request = LoadRequest(source.model_dir.name, source.version, source.path, source.spec)
    entry = RuntimeRegistry.default().choose(request)
    if entry.name == "onnx":
        raise CommandError(f"{source.path} is ONNX already; see serval optimize")
    if entry.name not in CONVERTIBLE:
        raise CommandError(
            f"cannot convert a {entry.name!r} model; convert handles {', '.join(CONVERTIBLE)}"
        )
    predictor = import_loader_class(entry)(request).load()
    if not isinstance(predictor, TabularPredictor):  # a third-party runtime of the same name
        predictor.close()
        raise CommandError(f"the {entry.name!r} runtime did not load a tabular model")
    return entry.name, predictor


def _native_outputs(native: TabularPredictor, rows: np.ndarray[Any, Any]) -> dict[str, Any]:
    spec = native.metadata.inputs[0]
    data = rows.astype(spec.datatype.numpy_dtype)
    request = InferenceRequest("convert", [Tensor(spec.name, spec.datatype, data)])
    return {tensor.name: _plain(tensor) for tensor in native.predict(request).outputs}


def _onnx_outputs(model: bytes, rows: np.ndarray[Any, Any]) -> dict[str, Any]:
    import onnxruntime as ort  # noqa: PLC0415 - the onnx extra

    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    names = [output.name for output in session.get_outputs()]
    results = session.run(names, {session.get_inputs()[0].name: rows})
    return {name: _plain(result) for name, result in zip(names, results, strict=True)}


def _plain(value: Any) -> np.ndarray[Any, Any]:
    """Labels as ``str`` whatever their source (BYTES tensors hold ``bytes``)."""
    array = value.data if isinstance(value, Tensor) else np.asarray(value)
    if array.dtype.kind == "O":
        texts = [v.decode() if isinstance(v, bytes) else str(v) for v in array.ravel()]
        return np.array(texts).reshape(array.shape)
    result: np.ndarray[Any, Any] = array
    return result
