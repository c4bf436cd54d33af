"""The precomputed layer's data handling (``core.composition.precomputed``): which outputs a
response returns, whether a precomputed answer fits what the model declares for them, and
the merge of precomputed rows and the model's rows into each output, in request order."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from serval.core.composition.stores import PrecomputedAnswer
from serval.core.errors import InvalidInputError, ModelExecutionError
from serval.core.tensors.datatypes import DataType
from serval.core.types import (
    InferenceRequest,
    InferenceResponse,
    ServableMetadata,
    Tensor,
    TensorSpec,
)

Array = np.ndarray[Any, Any]

# The output that says where each row's answer came from.
SOURCE = "source"
SOURCE_SPEC = TensorSpec(SOURCE, DataType.BYTES, (-1,))
FROM_STORE = b"precomputed"
FROM_MODEL = b"model"


def convert_output(value: Array, spec: TensorSpec) -> Array | str:
    """One row of an answer's output as the model's output ``spec`` declares it (its dtype,
    a row shape that fits the dimensions after the first), or why it cannot be."""
    want = spec.shape[1:]
    # The usual case first: what the batch job wrote is what the model declares.
    if (
        type(value) is np.ndarray
        and value.shape == want
        and spec.datatype is not DataType.BYTES
        and value.dtype == spec.datatype.numpy_dtype
    ):
        return value
    value = np.asarray(value)
    if len(value.shape) != len(want) or any(
        dim not in (-1, got) for dim, got in zip(want, value.shape, strict=True)
    ):
        return f"output {spec.name!r} has row shape {list(value.shape)}, not {list(want)}"
    if spec.datatype is DataType.BYTES:
        if value.dtype.kind not in ("O", "S", "U"):
            return f"output {spec.name!r} holds {value.dtype} values, not BYTES"
        return _as_bytes(value, spec.name)
    if value.dtype.kind in ("O", "S", "U"):
        return f"output {spec.name!r} holds text, not {spec.datatype.value}"
    dtype = spec.datatype.numpy_dtype
    # same_kind: float64 -> FP32 and int -> float are fine; float -> int or int -> BOOL would
    # change the answer.
    if not np.can_cast(value.dtype, dtype, "same_kind"):
        return f"output {spec.name!r} holds {value.dtype} values, not {spec.datatype.value}"
    return value.astype(dtype, copy=False)


def _as_bytes(value: Array, name: str) -> Array | str:
    if value.dtype.kind == "O" and all(isinstance(item, bytes) for item in value.flat):
        return value
    out = np.empty(value.shape, dtype=np.object_)
    for index, item in np.ndenumerate(value):
        if isinstance(item, bytes | np.bytes_):
            out[index] = bytes(item)
        elif isinstance(item, str):
            out[index] = item.encode()
        else:
            return f"output {name!r} holds a {type(item).__name__}, not BYTES"
    return out


def usable_outputs(
    answer: PrecomputedAnswer, specs: Sequence[TensorSpec]
) -> dict[str, Array] | str:
    """The answer's outputs named by ``specs``, converted, or why the answer cannot serve."""
    converted: dict[str, Array] = {}
    for spec in specs:
        value = answer.outputs.get(spec.name)
        if value is None:
            return f"lacks output {spec.name!r}"
        row = convert_output(value, spec)
        if isinstance(row, str):
            return row
        converted[spec.name] = row
    return converted


def merge_rows(
    spec: TensorSpec,
    rows: int,
    precomputed: Sequence[Array],
    precomputed_rows: Array,
    model: Tensor | None,
    model_rows: Array,
) -> Tensor:
    """Output ``spec`` of ``rows`` rows: row ``precomputed_rows[i]`` is ``precomputed[i]`` (one
    row each, converted already), rows ``model_rows`` are ``model``'s rows in order. Raises
    ``ModelExecutionError`` when the two disagree on the row shape (a variable dimension)."""
    if model is None and len(model_rows):
        raise ModelExecutionError(f"the model answered without its output {spec.name!r}")
    stacked = np.stack(precomputed) if precomputed else None
    row_shape = (
        stacked.shape[1:]
        if stacked is not None
        else model.data.shape[1:]
        if model is not None
        else tuple(max(dim, 0) for dim in spec.shape[1:])  # no rows at all
    )
    if model is not None and model.data.shape[1:] != row_shape:
        raise ModelExecutionError(
            f"output {spec.name!r}: the model answered rows of shape "
            f"{list(model.data.shape[1:])} but the precomputed answers have {list(row_shape)}"
        )
    out = np.empty((rows, *row_shape), dtype=spec.datatype.numpy_dtype)
    if stacked is not None:
        out[precomputed_rows] = stacked
    if model is not None:
        out[model_rows] = model.data
    return Tensor(spec.name, spec.datatype, out)


def response_outputs(
    request: InferenceRequest, metadata: ServableMetadata
) -> tuple[list[str], list[TensorSpec]]:
    """The names of the response's outputs, in order, and the model's outputs among them
    (what a precomputed answer must have)."""
    if request.outputs is None:
        specs = list(metadata.outputs)
        return [spec.name for spec in specs] + [SOURCE], specs
    names = [output.name for output in request.outputs]
    specs = []
    for name in names:
        if name == SOURCE:
            continue
        spec = metadata.output(name)
        if spec is None:  # the data plane checks requests first: only in-process callers
            raise InvalidInputError(f"unknown output {name!r} for model {request.model_name!r}")
        specs.append(spec)
    return names, specs


def merge_outputs(
    names: Sequence[str],
    rows: int,
    metadata: ServableMetadata,
    stored: Sequence[dict[str, Array]],
    stored_rows: Array,
    response: InferenceResponse | None,
    model_rows: Array,
    source: Array,
) -> list[Tensor]:
    """The response's outputs ``names``, each row from the store or the model."""
    from_model = {} if response is None else {t.name: t for t in response.outputs}
    outputs: list[Tensor] = []
    for name in names:
        if name == SOURCE:
            outputs.append(Tensor(SOURCE, DataType.BYTES, source))
            continue
        spec = metadata.output(name)
        assert spec is not None  # response_outputs checked
        model = from_model.get(name)
        if not len(stored_rows) and model is not None:
            outputs.append(model)  # every row from the model: its tensor as it is
            continue
        values = [answer[name] for answer in stored]
        outputs.append(merge_rows(spec, rows, values, stored_rows, model, model_rows))
    return outputs
