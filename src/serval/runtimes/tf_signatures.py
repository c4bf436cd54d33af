"""A TensorFlow model's signatures: each one's inputs and outputs as serval's tensor specs, and
a function that runs it on numpy arrays.

A SavedModel's signature defs are concrete functions taking keyword arguments and returning a
dict. A Keras 3 model (``model.keras``) has one signature, ``serving_default``, traced here
from its ``inputs`` as a concrete function of the same kind.
"""

# ruff: noqa: PLC0415 - keras is imported only for model.keras files

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from serval.core.errors import ModelConfigError, ModelLoadError
from serval.core.specs.tensors import TensorOverride
from serval.core.tensors.datatypes import DataType
from serval.core.types import TensorSpec
from serval.runtimes.options import apply_overrides

# TF Serving's name for the signature it runs when a request names none.
DEFAULT_SIGNATURE = "serving_default"

_DATATYPES: dict[str, DataType] = {
    "bool": DataType.BOOL,
    "uint8": DataType.UINT8,
    "uint16": DataType.UINT16,
    "uint32": DataType.UINT32,
    "uint64": DataType.UINT64,
    "int8": DataType.INT8,
    "int16": DataType.INT16,
    "int32": DataType.INT32,
    "int64": DataType.INT64,
    "float16": DataType.FP16,
    "float32": DataType.FP32,
    "float64": DataType.FP64,
    "string": DataType.BYTES,
}

# {input name: array} -> {output name: tf.Tensor}
Call = Callable[[Mapping[str, Any]], Mapping[str, Any]]


@dataclass(frozen=True, slots=True)
class TfSignature:
    """One signature: its declared tensors and the concrete function behind it."""

    name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    call: Call
    # Each input's numpy dtype in the graph, where model.yaml declares another datatype.
    casts: Mapping[str, np.dtype[Any]]


def saved_model_signatures(folder: Path) -> tuple[Any, list[TfSignature]]:
    """The SavedModel in ``folder`` and its signature defs (``serving_default`` first)."""
    try:
        loaded = tf.saved_model.load(str(folder))
    except Exception as exc:  # TF raises OSError, ValueError, its own errors...
        raise ModelLoadError(f"{folder} is not a loadable SavedModel: {exc}") from exc
    functions = dict(loaded.signatures)
    if not functions:
        raise ModelLoadError(
            f"the SavedModel in {folder} has no signature defs: save it with "
            f"tf.saved_model.save(..., signatures=...) or keras' model.export()"
        )
    signatures = [
        _from_concrete(name, functions[name], _keyword_call(functions[name]))
        for name in _ordered(functions)
    ]
    return loaded, signatures


def keras_signatures(path: Path) -> tuple[Any, list[TfSignature]]:
    """The Keras 3 model in ``path`` and its one signature, ``serving_default``."""
    import keras

    try:
        # safe_mode refuses Lambda layers' pickled Python code, as serval refuses pickles.
        model = keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:
        raise ModelLoadError(f"{path.name} is not a loadable Keras model: {exc}") from exc
    inputs = getattr(model, "inputs", None)
    if not inputs:
        raise ModelLoadError(
            f"{path.name} holds a {type(model).__name__} without declared inputs (a subclassed "
            f"model): build it with keras.Input, or export a SavedModel with model.export()"
        )
    names = [str(tensor.name) for tensor in inputs]
    specs = [
        tf.TensorSpec(tuple(tensor.shape), tf.as_dtype(tensor.dtype), name=name)
        for tensor, name in zip(inputs, names, strict=True)
    ]
    output_names = list(getattr(model, "output_names", None) or [])

    def serve(*args: Any) -> dict[str, Any]:
        result = model(list(args) if len(args) > 1 else args[0], training=False)
        return _named_outputs(result, output_names)

    function = tf.function(serve, input_signature=specs).get_concrete_function()

    def call(feeds: Mapping[str, Any]) -> Mapping[str, Any]:
        result: Mapping[str, Any] = function(*(feeds[name] for name in names))
        return result

    signature = _from_concrete(DEFAULT_SIGNATURE, function, call, names)
    return model, [signature]


def with_overrides(
    signatures: Sequence[TfSignature],
    inputs: tuple[TensorOverride, ...],
    outputs: tuple[TensorOverride, ...],
    source: str,
) -> list[TfSignature]:
    """``signatures`` with model.yaml's ``inputs``/``outputs`` corrections applied to every
    signature that has a tensor of that name; a name in none of them is an error."""
    for field, overrides in (("inputs", inputs), ("outputs", outputs)):
        known = {spec.name for s in signatures for spec in getattr(s, field)}
        unknown = [o.name for o in overrides if o.name not in known]
        if unknown:
            raise ModelConfigError(
                f"{source}: {field}: {', '.join(unknown)} not in any signature (they have: "
                f"{', '.join(sorted(known))})"
            )
    result = []
    for signature in signatures:
        new_inputs = _override(signature.inputs, inputs, "inputs", source)
        new_outputs = _override(signature.outputs, outputs, "outputs", source)
        casts = {
            new.name: old.datatype.numpy_dtype
            for old, new in zip(signature.inputs, new_inputs, strict=True)
            if old.datatype is not new.datatype and new.datatype is not DataType.BYTES
        }
        result.append(TfSignature(signature.name, new_inputs, new_outputs, signature.call, casts))
    return result


def _override(
    specs: tuple[TensorSpec, ...], overrides: tuple[TensorOverride, ...], field: str, source: str
) -> tuple[TensorSpec, ...]:
    names = {spec.name for spec in specs}
    return apply_overrides(specs, [o for o in overrides if o.name in names], field, source)


def _ordered(functions: Mapping[str, Any]) -> list[str]:
    rest = sorted(name for name in functions if name != DEFAULT_SIGNATURE)
    return [DEFAULT_SIGNATURE, *rest] if DEFAULT_SIGNATURE in functions else rest


def _keyword_call(function: Any) -> Call:
    def call(feeds: Mapping[str, Any]) -> Mapping[str, Any]:
        result: Mapping[str, Any] = function(**feeds)
        return result

    return call


def _named_outputs(result: Any, names: Sequence[str]) -> dict[str, Any]:
    """A Keras model's outputs by name: a dict's keys, else the model's output names (as
    many as there are outputs), else ``output_0``, ``output_1``... as ``model.export()``
    names them."""
    if isinstance(result, Mapping):
        return {str(key): value for key, value in result.items()}
    values = list(result) if isinstance(result, list | tuple) else [result]
    if len(names) != len(values):
        names = [f"output_{index}" for index in range(len(values))]
    return dict(zip(names, values, strict=True))


def _from_concrete(
    name: str, function: Any, call: Call, positional: Sequence[str] | None = None
) -> TfSignature:
    args, kwargs = function.structured_input_signature
    # Keras' traced function takes its inputs in order; a signature def, by keyword.
    declared = dict(kwargs) if positional is None else dict(zip(positional, args, strict=True))
    inputs = tuple(_spec(key, spec, f"signature {name!r}: input") for key, spec in declared.items())
    structured = function.structured_outputs
    if not isinstance(structured, Mapping):
        raise ModelLoadError(f"signature {name!r} does not return a dict of named outputs")
    outputs = tuple(
        _spec(key, spec, f"signature {name!r}: output") for key, spec in structured.items()
    )
    return TfSignature(name, inputs, outputs, call, {})


def _spec(name: str, spec: Any, what: str) -> TensorSpec:
    dtype = spec.dtype.name
    datatype = _DATATYPES.get(dtype)
    if datatype is None:
        raise ModelLoadError(f"{what} {name!r} has dtype {dtype}, which serval cannot serve")
    if spec.shape.rank is None:
        raise ModelLoadError(
            f"{what} {name!r} has an unknown rank: give the signature a TensorSpec with a shape "
            f"(None for any size)"
        )
    shape = tuple(-1 if dim is None else int(dim) for dim in spec.shape.as_list())
    return TensorSpec(name, datatype, shape)
