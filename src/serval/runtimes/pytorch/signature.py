"""A torch model's inputs and outputs: declared in ``model.yaml`` for TorchScript and pickled
modules (their files do not say them), read from a ``torch.export`` program's signature
otherwise (a dynamic dimension is -1).

Inputs are passed to ``forward`` in the order they are listed. Outputs are named by
``model.yaml`` for TorchScript, and for an exported program by the keys of the dict
``forward`` returns, else ``output`` (one tensor) or ``output_0``, ``output_1``... (a tuple).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import torch
from torch.export import ExportedProgram
from torch.export.graph_signature import InputKind, OutputKind
from torch.utils import _pytree as pytree

from serval.core.errors import ModelConfigError, ModelLoadError
from serval.core.model_spec import ModelSpec
from serval.core.specs.tensors import TensorOverride
from serval.core.types import TensorSpec
from serval.runtimes.options import apply_overrides
from serval.runtimes.pytorch.dtypes import protocol_datatype, torch_dtype

_EXAMPLE = (
    "e.g. inputs: [{name: x, datatype: FP32, shape: [-1, 4]}] and "
    "outputs: [{name: y, datatype: FP32, shape: [-1, 2]}]"
)


def declared_specs(
    spec: ModelSpec, source: str, what: str
) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    """The inputs and outputs ``model.yaml`` declares for a model whose file does not say
    them (``what`` names the file's kind in errors)."""
    missing = [field for field in ("inputs", "outputs") if not getattr(spec, field)]
    if missing:
        raise ModelConfigError(
            f"{source}: a {what} file does not say its inputs and outputs: declare "
            f"{' and '.join(missing)} (name, datatype and shape of each, inputs in the order "
            f"forward takes them), {_EXAMPLE}"
        )
    inputs = tuple(_declared(o, "inputs", source) for o in spec.inputs)
    outputs = tuple(_declared(o, "outputs", source) for o in spec.outputs)
    return inputs, outputs


def _declared(override: TensorOverride, field: str, source: str) -> TensorSpec:
    lacking = [key for key in ("datatype", "shape") if getattr(override, key) is None]
    if lacking:
        raise ModelConfigError(
            f"{source}: {field}: {override.name}: declare its {' and '.join(lacking)} "
            f"(the model file does not say them)"
        )
    assert override.datatype is not None and override.shape is not None  # checked above
    torch_dtype(override.datatype, f"{source}: {field}: {override.name}")
    return TensorSpec(override.name, override.datatype, override.shape, override.columns or ())


def check_arity(module: Any, inputs: Sequence[TensorSpec], source: str) -> None:
    """Raise unless ``forward`` takes as many tensors as ``model.yaml`` declares inputs."""
    required, names = _forward_parameters(module)
    if names is None:
        return
    if not required <= len(inputs) <= len(names):
        wanted = str(len(names)) if required == len(names) else f"{required} to {len(names)}"
        raise ModelConfigError(
            f"{source}: inputs: {len(inputs)} declared, but forward takes {wanted} "
            f"({', '.join(names)})"
        )


def _forward_parameters(module: Any) -> tuple[int, list[str] | None]:
    schema = getattr(module.forward, "schema", None)  # a TorchScript method's
    if schema is not None:
        arguments = schema.arguments[1:]  # after self
        required = sum(1 for a in arguments if a.default_value is None)
        return required, [a.name for a in arguments]
    try:
        parameters = list(inspect.signature(module.forward).parameters.values())
    except (TypeError, ValueError):
        return 0, None
    if any(p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in parameters):
        return 0, None
    required = sum(1 for p in parameters if p.default is p.empty)
    return required, [p.name for p in parameters]


def exported_specs(
    program: ExportedProgram, spec: ModelSpec, source: str
) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    """The program's user inputs and outputs, with ``model.yaml``'s corrections applied."""
    values = {
        node.name: node.meta.get("val")
        for node in program.graph.nodes
        if node.op in ("placeholder", "call_function", "get_attr")
    }
    signature = program.graph_signature
    inputs = [
        _exported(s.arg.name, values.get(s.arg.name), "input", source)
        for s in signature.input_specs
        if s.kind is InputKind.USER_INPUT
    ]
    results = [s.arg for s in signature.output_specs if s.kind is OutputKind.USER_OUTPUT]
    names = output_names(program.call_spec.out_spec, len(results))
    outputs = [
        _exported(name, _output_value(program, index), "output", source)
        for index, name in enumerate(names)
    ]
    return (
        apply_overrides(inputs, spec.inputs, "inputs", source),
        apply_overrides(outputs, spec.outputs, "outputs", source),
    )


def output_names(out_spec: pytree.TreeSpec | None, count: int) -> list[str]:
    """Names of the flattened outputs: a dict's keys, else ``output`` / ``output_<i>``."""
    if out_spec is not None and out_spec.type is dict and out_spec.num_leaves == count:
        keys = [str(key) for key in out_spec.context]
        if len(keys) == count:
            return keys
    if count == 1 and (out_spec is None or out_spec.is_leaf()):
        return ["output"]
    return [f"output_{index}" for index in range(count)]


def _output_value(program: ExportedProgram, index: int) -> Any:
    output = next(node for node in program.graph.nodes if node.op == "output")
    users = [
        arg
        for arg, s in zip(output.args[0], program.graph_signature.output_specs, strict=True)
        if s.kind is OutputKind.USER_OUTPUT
    ]
    node = users[index]
    return node.meta.get("val") if isinstance(node, torch.fx.Node) else node


def _exported(name: str, value: Any, kind: str, source: str) -> TensorSpec:
    if not isinstance(value, torch.Tensor):
        raise ModelLoadError(
            f"{source}: the exported program's {kind} {name!r} is not a tensor "
            f"({type(value).__name__}); serval passes and returns tensors only"
        )
    shape = tuple(dim if isinstance(dim, int) else -1 for dim in value.shape)
    return TensorSpec(name, protocol_datatype(value.dtype, f"{kind} {name!r}"), shape)
