"""Merging requests into one batch along the first dimension, and splitting the answer back.

Requests may share a batch when their ``batch_key`` is equal: the same inputs with the same
datatypes and trailing shapes (everything but the first, batch, dimension), the same output
selection and the same request parameters (adapters take the parameters that concern only the
transport or the queue off a request when they decode it; see ``protocols/oip``).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from itertools import accumulate, pairwise
from typing import Any

import numpy as np

from serval.core.errors import InvalidInputError, ModelExecutionError
from serval.core.types import InferenceRequest, Parameters, Tensor


def batch_rows(request: InferenceRequest, max_batch_size: int) -> int:
    """The rows of ``request``: the first dimension its inputs share. Raises
    ``InvalidInputError`` if they do not share one or it exceeds ``max_batch_size``."""
    rows: int | None = None
    for tensor in request.inputs:
        if tensor.data.ndim == 0:
            raise InvalidInputError(
                f"input {tensor.name!r} is a scalar; model {request.model_name!r} batches, so "
                f"every input needs a first (batch) dimension"
            )
        first = int(tensor.data.shape[0])
        if rows is None:
            rows = first
        elif first != rows:
            raise InvalidInputError(
                f"inputs of model {request.model_name!r} share their first (batch) dimension: "
                f"input {request.inputs[0].name!r} has {rows} rows, {tensor.name!r} has {first}"
            )
    rows = rows or 0
    if rows > max_batch_size:
        raise InvalidInputError(
            f"the request has {rows} rows; model {request.model_name!r} runs at most "
            f"max_batch_size={max_batch_size} rows at once"
        )
    return rows


def batch_key(request: InferenceRequest) -> Hashable:
    """Equal for requests that can share a batch."""
    tensors = request.inputs
    if len(tensors) == 1:  # the usual case: no sort
        tensor = tensors[0]
        inputs: tuple[Any, ...] = ((tensor.name, tensor.datatype, tensor.data.shape[1:]),)
    else:
        inputs = tuple(sorted((t.name, t.datatype.value, t.data.shape[1:]) for t in tensors))
    outputs = (
        None
        if request.outputs is None
        else tuple((o.name, _model_parameters(o.parameters)) for o in request.outputs)
    )
    return inputs, outputs, _model_parameters(request.parameters)


_NO_PARAMETERS: frozenset[tuple[str, Any]] = frozenset()


def _model_parameters(parameters: Parameters) -> frozenset[tuple[str, Any]]:
    return frozenset(parameters.items()) if parameters else _NO_PARAMETERS


def merge(requests: Sequence[InferenceRequest]) -> InferenceRequest:
    """One request holding every row of ``requests`` (which share a ``batch_key``), in order."""
    first = requests[0]
    by_name = [{tensor.name: tensor.data for tensor in request.inputs} for request in requests]
    inputs = [
        Tensor(
            tensor.name,
            tensor.datatype,
            np.concatenate([arrays[tensor.name] for arrays in by_name], axis=0),
        )
        for tensor in first.inputs
    ]
    return InferenceRequest(
        model_name=first.model_name,
        inputs=inputs,
        model_version=first.model_version,
        parameters=first.parameters,
        outputs=first.outputs,
    )


def split(outputs: Sequence[Tensor], rows: Sequence[int]) -> list[list[Tensor]]:
    """Each request's rows of ``outputs`` (views, no copy), for requests of ``rows`` rows."""
    total = sum(rows)
    for tensor in outputs:
        if tensor.data.ndim == 0 or tensor.data.shape[0] != total:
            raise ModelExecutionError(
                f"output {tensor.name!r} has shape {list(tensor.data.shape)}; for a batch of "
                f"{total} rows its first dimension must be {total}"
            )
    bounds = [0, *accumulate(rows)]
    return [
        [
            Tensor(tensor.name, tensor.datatype, tensor.data[start:end], tensor.parameters)
            for tensor in outputs
        ]
        for start, end in pairwise(bounds)
    ]
