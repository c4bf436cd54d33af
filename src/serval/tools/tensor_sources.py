"""Export a loaded TensorFlow or PyTorch version to ONNX, with its answers to sample inputs.

An ONNX model has one signature. A SavedModel with several signature defs (or none named
``serving_default``) would lose requests that name the others if its ONNX version replaced it,
so one of its signatures is converted only into another model (``--output-model``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from serval.core.errors import ToolError
from serval.core.servable import Predictor
from serval.core.tensors.signatures import SIGNATURE_PARAMETER
from serval.core.types import InferenceRequest, Tensor
from serval.tools.comparison import sample_tensors
from serval.tools.exported import CONVERTERS_HINT, Exported

DEFAULT_SIGNATURE = "serving_default"


def export_tensor_model(
    runtime: str,
    native: Predictor,
    signature: str | None,
    rows_file: Path | None,
    n_rows: int,
    opset: int | None,
    *,
    same_model: bool,
) -> Exported:
    """``native`` (loaded by the ``tensorflow`` or ``torch`` runtime; closed here) as ONNX,
    with its answers to sample inputs. Raises ``ToolError`` when it cannot be converted."""
    try:
        parameters: dict[str, Any] = {}
        if runtime == "tensorflow":
            name = _signature(native, signature, same_model=same_model)
            chosen = native.signatures[name]  # type: ignore[attr-defined]
            inputs, outputs = chosen.inputs, chosen.outputs
            parameters = {SIGNATURE_PARAMETER: name}
        else:
            inputs, outputs = native.metadata.inputs, native.metadata.outputs
        feeds = sample_tensors(inputs, rows_file, n_rows)  # before exporting: it may refuse
        if runtime == "tensorflow":
            proto = _converted(lambda: _tf(chosen, opset))
        else:
            model = getattr(native, "model", None)
            proto = _converted(lambda: _torch(model, inputs, outputs, opset))
        tensors = [Tensor(spec.name, spec.datatype, feeds[spec.name]) for spec in inputs]
        asked = InferenceRequest("convert", tensors, parameters=parameters)
        expected = {t.name: t.data for t in native.predict(asked).outputs}
    finally:
        native.close()
    rows = int(next(iter(feeds.values())).shape[0]) if feeds else 0
    onnx_request = InferenceRequest("convert", tensors)
    return Exported(proto, inputs, outputs, onnx_request, expected, rows)


def _signature(native: Any, wanted: str | None, *, same_model: bool) -> str:
    names = list(native.signatures)
    has_default = not native.metadata.requires_signature
    if wanted is None:
        if not has_default:
            raise ToolError(
                f"the model has no {DEFAULT_SIGNATURE!r} signature: name the one to convert "
                f"with --signature (it has: {', '.join(names)})"
            )
        wanted = names[0]
    if wanted not in names:
        raise ToolError(f"the model has no signature {wanted!r}; it has: {', '.join(names)}")
    if same_model and names != [DEFAULT_SIGNATURE]:
        raise ToolError(
            f"the model's signatures are {', '.join(names)}, and an ONNX model has one: its "
            f"clients' requests naming another would fail on the ONNX version; write signature "
            f"{wanted!r} to another model with --output-model FOLDER"
        )
    return wanted


def _converted(export: Any) -> bytes:
    try:
        proto = export()
    except ImportError as exc:  # tf2onnx or onnxscript
        raise ToolError(f"{exc.name} is missing; {CONVERTERS_HINT}") from exc
    result: bytes = proto.SerializeToString()
    return result


def _tf(signature: Any, opset: int | None) -> Any:
    from serval.tools.tf_export import export_tf_signature  # noqa: PLC0415 - tf2onnx

    return export_tf_signature(signature, opset)


def _torch(model: Any, inputs: Any, outputs: Any, opset: int | None) -> Any:
    from serval.tools.torch_export import export_torch  # noqa: PLC0415 - torch

    if model is None:
        raise ToolError("the 'torch' runtime did not give its model to convert")
    return export_torch(model, inputs, outputs, opset)
