"""Convert a scikit-learn, XGBoost or LightGBM version to ONNX, as the next version.

The ONNX version is written only when it serves the same requests as the native one: the
server's ONNX runtime must see the same input and output names, datatypes and shapes as the
native runtime, and both must answer the same request (FP64 rows, as clients send them)
within ``tolerance``.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from serval.core.errors import ToolError
from serval.core.lifecycle.loader import LoadRequest
from serval.core.model_spec import ModelSpec
from serval.core.servable import Predictor
from serval.core.types import InferenceRequest, Tensor, TensorSpec
from serval.runtimes.registry import RuntimeEntry, RuntimeRegistry, import_loader_class
from serval.runtimes.tabular import TabularPredictor
from serval.tools.comparison import max_differences, sample_rows
from serval.tools.versions import SourceVersion, find_version, write_version

CONVERTIBLE = ("sklearn", "xgboost", "lightgbm")
_CONVERTERS_HINT = "install the converters with: pip install 'serval-server[convert]'"


@dataclass(frozen=True, slots=True)
class Conversion:
    """What ``convert_version`` did: ``written`` is None when the outputs differed too much."""

    source: SourceVersion
    runtime: str
    rows: int
    differences: dict[str, float]
    model: bytes
    written: Path | None

    @property
    def worst(self) -> float:
        return max(self.differences.values(), default=0.0)


def convert_version(
    model_dir: Path,
    *,
    version: int | None = None,
    output_model: Path | None = None,
    rows_file: Path | None = None,
    n_rows: int = 256,
    tolerance: float = 1e-4,
    opset: int | None = None,
) -> Conversion:
    """Convert a version of ``model_dir`` (the highest by default) and write it as the next
    version of ``output_model`` (default ``model_dir``) unless an output differs by more than
    ``tolerance``. Raises ``ToolError`` when it cannot convert."""
    source = find_version(model_dir, version)
    request = LoadRequest(source.model_dir.name, source.version, source.path, source.spec)
    runtime = _convertible_runtime(request)
    target_dir = output_model or model_dir
    if target_dir.resolve() == model_dir.resolve():
        _check_spec_fits_onnx(source)
    try:
        from serval.tools.onnx_export import export_onnx  # noqa: PLC0415 - the convert extra
    except ImportError as exc:
        raise ToolError(f"{exc.name} is missing; {_CONVERTERS_HINT}") from exc
    native = _load_native(runtime, request)
    try:
        inputs, outputs = native.metadata.inputs, native.metadata.outputs
        n_features = inputs[0].shape[1] if len(inputs[0].shape) == 2 else -1
        if n_features < 1:
            raise ToolError("the model does not say how many features it takes")
        try:
            proto = export_onnx(runtime, native.model, n_features, inputs, outputs, opset)
        except ImportError as exc:  # skl2onnx or onnxmltools
            raise ToolError(f"{exc.name} is missing; {_CONVERTERS_HINT}") from exc
        model = proto.SerializeToString()
        rows = sample_rows(rows_file, n_features, n_rows)
        check = _request(inputs[0], rows)
        expected = _outputs(native, check)
    finally:
        native.close()
    onnx_version = _load_onnx(model)
    try:
        _check_same_interface(inputs, outputs, onnx_version)
        actual = _outputs(onnx_version, check)
    finally:
        onnx_version.close()
    differences = max_differences(expected, actual)
    conversion = Conversion(source, runtime, len(rows), differences, model, None)
    if not conversion.worst <= tolerance:
        return conversion
    written = write_version(target_dir, {"model.onnx": model}) / "model.onnx"
    return Conversion(source, runtime, len(rows), differences, model, written)


def _convertible_runtime(request: LoadRequest) -> str:
    entry: RuntimeEntry = RuntimeRegistry.default().choose(request)
    if entry.name == "onnx":
        raise ToolError(f"{request.path} is ONNX already; see serval optimize")
    if entry.name == "python":
        raise ToolError(
            f"cannot convert a 'python' model: its predict is Python code, which has no ONNX "
            f"form; serve it as it is (convert handles {', '.join(CONVERTIBLE)})"
        )
    if entry.name not in CONVERTIBLE:
        raise ToolError(
            f"cannot convert a {entry.name!r} model; convert handles {', '.join(CONVERTIBLE)}"
        )
    return entry.name


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
        raise ToolError(
            f"{source.model_dir / 'model.yaml'} sets {', '.join(clashing)} for the native "
            f"runtime, which would apply to the ONNX version too; write it to another model "
            f"with --output-model FOLDER"
        )


def _load_native(runtime: str, request: LoadRequest) -> TabularPredictor:
    entry = RuntimeRegistry.default().choose(request)
    predictor = import_loader_class(entry)(request).load()
    if not isinstance(predictor, TabularPredictor):  # a third-party runtime of the same name
        predictor.close()
        raise ToolError(f"the {runtime!r} runtime did not load a tabular model")
    return predictor


def _load_onnx(model: bytes) -> Predictor:
    """The ONNX version as the server will load it (default ``model.yaml``)."""
    import onnxruntime as ort  # noqa: PLC0415 - the onnx extra

    from serval.runtimes.onnx import OnnxLoader  # noqa: PLC0415
    from serval.tools.quiet import quiet_onnxruntime  # noqa: PLC0415

    quiet_onnxruntime(ort)
    with tempfile.TemporaryDirectory(prefix="serval-convert-") as folder:
        (Path(folder) / "model.onnx").write_bytes(model)
        spec = ModelSpec.model_validate({"warmup": {"enabled": False}})
        return OnnxLoader(LoadRequest("convert", 1, Path(folder), spec)).load()


def _check_same_interface(
    inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec], converted: Predictor
) -> None:
    """Clients of the native version must be able to send the same requests to this one."""
    for kind, native, onnx_specs in (
        ("inputs", inputs, converted.metadata.inputs),
        ("outputs", outputs, converted.metadata.outputs),
    ):
        if _described(native) != _described(onnx_specs):
            raise ToolError(
                f"the ONNX model's {kind} would differ from the native model's: "
                f"{_described(onnx_specs)} instead of {_described(native)}; nothing was written"
            )


def _described(specs: Sequence[TensorSpec]) -> list[str]:
    return [f"{s.name} {s.datatype.value} {list(s.shape)}" for s in specs]


def _request(spec: TensorSpec, rows: np.ndarray[Any, Any]) -> InferenceRequest:
    data = rows.astype(spec.datatype.numpy_dtype)
    return InferenceRequest("convert", [Tensor(spec.name, spec.datatype, data)])


def _outputs(predictor: Predictor, request: InferenceRequest) -> dict[str, np.ndarray[Any, Any]]:
    return {tensor.name: tensor.data for tensor in predictor.predict(request).outputs}
