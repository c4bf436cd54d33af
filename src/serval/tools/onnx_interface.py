"""Give a converted ONNX graph the interface of the model it came from.

Clients of a version keep sending the same requests to the next one, so the ONNX graph takes
the native model's input names, datatypes and shapes and gives its output names, datatypes and
shapes. The converters work in FP32 and name things their own way: a ``Cast`` at the input
(FP64 requests -> the FP32 graph), a ``Reshape`` and a ``Cast`` at each output where needed,
and the outputs renamed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from serval.core.errors import ToolError
from serval.core.tensors.datatypes import DataType
from serval.core.types import TensorSpec


def onnx_type(datatype: DataType) -> int:
    """The ONNX element type of an Open Inference Protocol datatype."""
    if datatype is DataType.BYTES:
        return int(TensorProto.STRING)
    return int(helper.np_dtype_to_tensor_dtype(datatype.numpy_dtype))


def match_interface(
    proto: onnx.ModelProto, inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec]
) -> onnx.ModelProto:
    """``proto`` with ``inputs`` and ``outputs`` (in the graph's order; extra outputs dropped)."""
    graph = proto.graph
    if len(graph.input) != len(inputs):
        raise ToolError(
            f"the converted model has {len(graph.input)} input(s); the native one has {len(inputs)}"
        )
    if len(graph.output) < len(outputs):
        raise ToolError(
            f"the converted model has {len(graph.output)} output(s); the native one has "
            f"{len(outputs)}"
        )
    _match_inputs(graph, inputs)
    _match_outputs(graph, outputs)
    return proto


def order_by_name(
    proto: onnx.ModelProto, inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec]
) -> onnx.ModelProto:
    """``proto`` with its graph's inputs and outputs in the order of ``inputs`` and
    ``outputs``, matched by name (exporters that keep the source's names may order them their
    own way: tf2onnx sorts a signature's outputs)."""
    graph = proto.graph
    for kind, values, specs in (
        ("inputs", graph.input, inputs),
        ("outputs", graph.output, outputs),
    ):
        found = {value.name: value for value in values}
        missing = [spec.name for spec in specs if spec.name not in found]
        if missing:
            raise ToolError(
                f"the converted model's {kind} are {', '.join(found)}; it lacks "
                f"{', '.join(missing)}"
            )
        names = [spec.name for spec in specs]
        names += [name for name in found if name not in names]  # extras: match_interface says
        copies = []
        for name in names:
            copy = onnx.ValueInfoProto()
            copy.CopyFrom(found[name])
            copies.append(copy)
        del values[:]
        values.extend(copies)
    return proto


def _dims(spec: TensorSpec) -> list[str | int | None]:
    if not spec.shape:
        return []
    first: str | int = "N" if spec.shape[0] < 0 else spec.shape[0]
    return [first, *(dim if dim > 0 else None for dim in spec.shape[1:])]


def _match_inputs(graph: onnx.GraphProto, specs: Sequence[TensorSpec]) -> None:
    produced = list(graph.input)
    del graph.input[:]
    casts = []
    for old, spec in zip(produced, specs, strict=True):
        wanted = onnx_type(spec.datatype)
        inner = old.name
        if old.type.tensor_type.elem_type != wanted:
            # The graph reads the cast value; the request's tensor keeps the input's name.
            inner = f"{spec.name}__as_{TensorProto.DataType.Name(old.type.tensor_type.elem_type)}"
            _rename_uses(graph, old.name, inner)
            to = old.type.tensor_type.elem_type
            casts.append(helper.make_node("Cast", [spec.name], [inner], to=to))
        else:
            _rename_uses(graph, old.name, spec.name)
        graph.input.append(helper.make_tensor_value_info(spec.name, wanted, _dims(spec)))
    for cast in reversed(casts):
        graph.node.insert(0, cast)


def _match_outputs(graph: onnx.GraphProto, specs: Sequence[TensorSpec]) -> None:
    produced = list(graph.output)
    del graph.output[:]
    for old, spec in zip(produced, specs, strict=False):
        elem_type = old.type.tensor_type.elem_type
        wanted = onnx_type(spec.datatype)
        reshape = len(old.type.tensor_type.shape.dim) != len(spec.shape)
        cast = elem_type != wanted
        if not reshape and not cast:
            _rename(graph, old.name, spec.name)
        else:
            current = old.name
            if reshape:  # a regressor's [N, 1] becomes [N], as the native model gives it
                target = np.array([-1, *spec.shape[1:]], dtype=np.int64)
                shape_name = f"{spec.name}__shape"
                graph.initializer.append(numpy_helper.from_array(target, shape_name))
                reshaped = spec.name if not cast else f"{spec.name}__reshaped"
                graph.node.append(helper.make_node("Reshape", [current, shape_name], [reshaped]))
                current = reshaped
            if cast:
                graph.node.append(helper.make_node("Cast", [current], [spec.name], to=wanted))
        graph.output.append(helper.make_tensor_value_info(spec.name, wanted, _dims(spec)))


def _rename_uses(graph: onnx.GraphProto, old: str, new: str) -> None:
    for node in graph.node:
        for index, name in enumerate(node.input):
            if name == old:
                node.input[index] = new


def _rename(graph: onnx.GraphProto, old: str, new: str) -> None:
    _rename_uses(graph, old, new)
    for node in graph.node:
        for index, name in enumerate(node.output):
            if name == old:
                node.output[index] = new
