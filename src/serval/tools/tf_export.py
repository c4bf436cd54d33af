"""A TensorFlow signature (SavedModel signature def, or a Keras model's ``serving_default``)
-> ONNX (tf2onnx).

The signature is traced as a ``tf.function`` over its inputs, so tf2onnx names the graph's
inputs and outputs after the signature's; ``onnx_interface`` then puts them in the order and
datatypes serval's TensorFlow runtime declares (model.yaml's corrections included).
"""

# ruff: noqa: PLC0415 - tensorflow and tf2onnx are optional extras

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import onnx

from serval.core.errors import ToolError
from serval.core.tensors.datatypes import DataType
from serval.tools.onnx_export import dedupe_opsets
from serval.tools.onnx_interface import match_interface, order_by_name
from serval.tools.quiet import quiet_converters

if TYPE_CHECKING:
    from serval.runtimes.tf_signatures import TfSignature


def export_tf_signature(signature: TfSignature, opset: int | None) -> onnx.ModelProto:
    """The ONNX graph of ``signature``, with its inputs and outputs. A missing tf2onnx raises
    ``ImportError`` (the caller names the extra to install)."""
    import tensorflow as tf
    import tf2onnx

    names = [spec.name for spec in signature.inputs]
    specs = [
        tf.TensorSpec(
            [None if dim < 0 else dim for dim in spec.shape],
            _graph_dtype(tf, signature, spec.name, spec.datatype),
            name=spec.name,
        )
        for spec in signature.inputs
    ]

    def serve(*args: Any) -> dict[str, Any]:
        result: Mapping[str, Any] = signature.call(dict(zip(names, args, strict=True)))
        return {name: tf.identity(value, name=name) for name, value in result.items()}

    function = tf.function(serve, input_signature=specs)
    try:
        with quiet_converters():
            proto, _ = tf2onnx.convert.from_function(function, input_signature=specs, opset=opset)
    except Exception as exc:  # tf2onnx raises ValueError, KeyError, its own errors...
        raise ToolError(
            f"tf2onnx cannot convert signature {signature.name!r}: {type(exc).__name__}: "
            f"{_first_line(exc)}"
        ) from exc
    proto = order_by_name(proto, signature.inputs, signature.outputs)
    proto = dedupe_opsets(match_interface(proto, signature.inputs, signature.outputs))
    onnx.checker.check_model(proto)
    return proto


def _graph_dtype(tf: Any, signature: TfSignature, name: str, datatype: DataType) -> Any:
    """The dtype the graph takes: the signature's own where model.yaml declares another."""
    cast = signature.casts.get(name)
    if cast is not None:
        return tf.as_dtype(cast)
    if datatype is DataType.BYTES:
        return tf.string
    return tf.as_dtype(datatype.numpy_dtype)


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else "no message"
