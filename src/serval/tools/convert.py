"""Convert a scikit-learn, XGBoost, LightGBM, TensorFlow or PyTorch version to ONNX, as the
next version.

The ONNX version is written only when it serves the same requests as the native one: the
server's ONNX runtime must see the same input and output names, datatypes and shapes as the
native runtime, and both must answer the same request (FP64 rows for the tabular runtimes, as
clients send them; the declared datatypes for the tensor ones) within ``tolerance``.
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
from serval.tools.exported import CONVERTERS_HINT, Exported
from serval.tools.tensor_sources import export_tensor_model
from serval.tools.versions import SourceVersion, find_version, write_version

TENSOR_RUNTIMES = ("tensorflow", "torch")
CONVERTIBLE = ("sklearn", "xgboost", "lightgbm", *TENSOR_RUNTIMES)


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
    signature: str | None = None,
) -> Conversion:
    """Convert a version of ``model_dir`` (the highest by default) and write it as the next
    version of ``output_model`` (default ``model_dir``) unless an output differs by more than
    ``tolerance``. ``signature`` picks a TensorFlow model's signature (default
    ``serving_default``). Raises ``ToolError`` when it cannot convert."""
    source = find_version(model_dir, version)
    request = LoadRequest(source.model_dir.name, source.version, source.path, source.spec)
    runtime = _convertible_runtime(request)
    target_dir = output_model or model_dir
    same_model = target_dir.resolve() == model_dir.resolve()
    if same_model:
        _check_spec_fits_onnx(source, declared_ok=runtime in TENSOR_RUNTIMES)
    if signature is not None and runtime != "tensorflow":
        raise ToolError(f"--signature applies to TensorFlow models; this one is {runtime!r}")
    if runtime in TENSOR_RUNTIMES:
        exported = export_tensor_model(
            runtime, _load(request), signature, rows_file, n_rows, opset, same_model=same_model
        )
    else:
        exported = _export_tabular(runtime, request, rows_file, n_rows, opset)
    # In the same model, model.yaml's inputs/outputs (a TorchScript model's) apply to it too.
    declared = source.spec if same_model else None
    onnx_version = _load_onnx(exported.model, declared)
    try:
        _check_same_interface(exported.inputs, exported.outputs, onnx_version)
        actual = _outputs(onnx_version, exported.onnx_request)
    finally:
        onnx_version.close()
    differences = max_differences(exported.expected, actual)
    rows = exported.rows
    conversion = Conversion(source, runtime, rows, differences, exported.model, None)
    if not conversion.worst <= tolerance:
        return conversion
    written = write_version(target_dir, {"model.onnx": exported.model}) / "model.onnx"
    return Conversion(source, runtime, rows, differences, exported.model, written)


def _export_tabular(
    runtime: str, request: LoadRequest, rows_file: Path | None, n_rows: int, opset: int | None
) -> Exported:
    try:
        from serval.tools.onnx_export import export_onnx  # noqa: PLC0415 - the convert extra
    except ImportError as exc:
        raise ToolError(f"{exc.name} is missing; {CONVERTERS_HINT}") from exc
    native = _load_native(runtime, request)
    try:
        inputs, outputs = native.metadata.inputs, native.metadata.outputs
        n_features = inputs[0].shape[1] if len(inputs[0].shape) == 2 else -1
        if n_features < 1:
            raise ToolError("the model does not say how many features it takes")
        try:
            proto = export_onnx(runtime, native.model, n_features, inputs, outputs, opset)
        except ImportError as exc:  # skl2onnx or onnxmltools
            raise ToolError(f"{exc.name} is missing; {CONVERTERS_HINT}") from exc
        rows = sample_rows(rows_file, n_features, n_rows)
        check = _request(inputs[0], rows)
        expected = _outputs(native, check)
    finally:
        native.close()
    return Exported(proto.SerializeToString(), inputs, outputs, check, expected, len(rows))


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


def _check_spec_fits_onnx(source: SourceVersion, *, declared_ok: bool) -> None:
    """model.yaml applies to every version: settings for the native runtime would break the
    ONNX version. Where ``declared_ok``, its ``inputs`` and ``outputs`` (which a TorchScript
    model must declare) may stay: the ONNX version is loaded with them and must keep the same
    interface."""
    spec = source.spec
    clashing = [
        key
        for key, value in (
            ("runtime", spec.runtime not in (None, "onnx")),
            ("runtime_options", bool(spec.runtime_options)),
            ("inputs", bool(spec.inputs) and not declared_ok),
            ("outputs", bool(spec.outputs) and not declared_ok),
        )
        if value
    ]
    if clashing:
        raise ToolError(
            f"{source.model_dir / 'model.yaml'} sets {', '.join(clashing)} for the native "
            f"runtime, which would apply to the ONNX version too; write it to another model "
            f"with --output-model FOLDER"
        )


def _load(request: LoadRequest) -> Predictor:
    """The version as the server loads it (the same checks: trusted types, trust_pickle)."""
    entry = RuntimeRegistry.default().choose(request)
    return import_loader_class(entry)(request).load()  # a missing framework: ModelConfigError


def _load_native(runtime: str, request: LoadRequest) -> TabularPredictor:
    predictor = _load(request)
    if not isinstance(predictor, TabularPredictor):  # a third-party runtime of the same name
        predictor.close()
        raise ToolError(f"the {runtime!r} runtime did not load a tabular model")
    return predictor


def _load_onnx(model: bytes, declared: ModelSpec | None) -> Predictor:
    """The ONNX version as the server will load it: with the default ``model.yaml``, or
    with the ``inputs`` and ``outputs`` of ``declared`` (the model.yaml it will be read with)."""
    import onnxruntime as ort  # noqa: PLC0415 - the onnx extra

    from serval.runtimes.onnx import OnnxLoader  # noqa: PLC0415
    from serval.tools.quiet import quiet_onnxruntime  # noqa: PLC0415

    quiet_onnxruntime(ort)
    with tempfile.TemporaryDirectory(prefix="serval-convert-") as folder:
        (Path(folder) / "model.onnx").write_bytes(model)
        spec = ModelSpec.model_validate({"warmup": {"enabled": False}})
        if declared is not None:
            spec = spec.model_copy(update={"inputs": declared.inputs, "outputs": declared.outputs})
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
