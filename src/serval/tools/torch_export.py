"""A PyTorch model -> ONNX (``torch.onnx.export``).

``torch.onnx`` exports a ``torch.export`` program (``model.pt2``) or an ``nn.Module`` (a
trusted pickle) with its dynamo-based exporter, which needs ``onnxscript``; it refuses a
TorchScript module, so ``model.pt`` goes through the older TorchScript-based exporter (which
torch deprecates, and which cannot export a ``forward`` returning a dict). Every -1 dimension
of the metadata stays dynamic; the graph's inputs and outputs take the metadata's names.
"""

# ruff: noqa: PLC0415 - torch is an optional extra

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import onnx

from serval.core.errors import ToolError
from serval.core.types import TensorSpec
from serval.tools.onnx_export import dedupe_opsets
from serval.tools.onnx_interface import match_interface, order_by_name
from serval.tools.quiet import quiet_converters

_EXAMPLE_SIZE = 2  # of a -1 dimension in the example inputs (1 would be specialized)


def export_torch(
    model: Any,
    inputs: Sequence[TensorSpec],
    outputs: Sequence[TensorSpec],
    opset: int | None,
) -> onnx.ModelProto:
    """The ONNX graph of a loaded torch model (an ``ExportedProgram``, a ``ScriptModule`` or
    an ``nn.Module``) with the metadata's ``inputs`` and ``outputs``. A missing onnxscript
    raises ``ImportError`` (the caller names the extra to install)."""
    import torch

    input_names = [spec.name for spec in inputs]
    output_names = [spec.name for spec in outputs]
    try:
        with quiet_converters():
            if isinstance(model, torch.jit.ScriptModule):
                proto = _from_torchscript(model, inputs, output_names, opset)
            else:
                import onnxscript  # noqa: F401 - the dynamo exporter's: missing, name the extra

                program = torch.onnx.export(
                    model,
                    () if isinstance(model, torch.export.ExportedProgram) else _examples(inputs),
                    input_names=input_names,
                    output_names=output_names,
                    dynamic_shapes=None
                    if isinstance(model, torch.export.ExportedProgram)
                    else _dynamic_shapes(inputs),
                    opset_version=opset,
                    dynamo=True,
                    verbose=False,
                )
                if program is None:  # only when given a file to write
                    raise ToolError("torch.onnx.export returned no program")
                proto = program.model_proto
    except ImportError:
        raise
    except Exception as exc:  # torch.onnx raises its own errors, RuntimeError, ValueError...
        hint = ""
        if isinstance(model, torch.jit.ScriptModule):
            hint = (
                " (TorchScript goes through torch's older exporter, which cannot export every "
                "model, a forward returning a dict among them: save a torch.export program, "
                "model.pt2, and convert that)"
            )
        raise ToolError(
            f"torch.onnx cannot export the model: {type(exc).__name__}: {_reason(exc)}{hint}"
        ) from exc
    proto = order_by_name(proto, inputs, outputs)
    proto = dedupe_opsets(match_interface(proto, inputs, outputs))
    onnx.checker.check_model(proto)
    return proto


def _from_torchscript(
    model: Any, inputs: Sequence[TensorSpec], output_names: list[str], opset: int | None
) -> onnx.ModelProto:
    import torch

    dynamic_axes = {
        spec.name: {index: f"{spec.name}_{index}" for index in _variable(spec)}
        for spec in inputs
        if _variable(spec)
    }
    for name in output_names:  # the batch dimension of every output follows the inputs'
        dynamic_axes.setdefault(name, {0: f"{name}_0"})
    with tempfile.TemporaryDirectory(prefix="serval-convert-") as folder:
        path = Path(folder) / "model.onnx"
        torch.onnx.export(
            model,
            _examples(inputs),
            path,
            input_names=[spec.name for spec in inputs],
            output_names=output_names,
            dynamic_axes=dynamic_axes,
            opset_version=opset,
            dynamo=False,
        )
        return onnx.load(str(path))


def _examples(inputs: Sequence[TensorSpec]) -> tuple[Any, ...]:
    import torch

    from serval.runtimes.pytorch.dtypes import TO_TORCH

    return tuple(
        torch.zeros(
            [_EXAMPLE_SIZE if dim < 0 else dim for dim in spec.shape],
            dtype=TO_TORCH[spec.datatype],
        )
        for spec in inputs
    )


def _dynamic_shapes(inputs: Sequence[TensorSpec]) -> tuple[dict[int, Any], ...]:
    import torch

    return tuple({index: torch.export.Dim.DYNAMIC for index in _variable(spec)} for spec in inputs)


def _variable(spec: TensorSpec) -> list[int]:
    return [index for index, dim in enumerate(spec.shape) if dim < 0]


def _reason(exc: BaseException) -> str:
    """The error's summary: torch.onnx's messages run to pages of advice and graphs."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    summary = next(
        (line for line in lines if line.startswith("<class ")), lines[0] if lines else ""
    )
    return summary or "no message"
