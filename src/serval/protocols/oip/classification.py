"""Triton's classification extension: a requested output's ``class_count`` (k) turns that
output into its top-k classes, as BYTES strings ``"<score>:<index>"`` or, where the output
declares labels in model.yaml (``outputs: [{name: ..., labels: [...]}]``),
``"<score>:<index>:<label>"``; highest score first, ties in index order.

Shapes: a tensor of two or more dimensions is read as rows (its first dimension) of scores
(the rest, flattened), answering ``[rows, k]``; a one-dimensional tensor answers ``[k]``.
``k`` above the number of classes gives every class, as Triton does. A float score is
written as C++'s ``std::to_string`` writes it (six decimals, as Triton answers), an integer
one as the integer. REST and gRPC apply it alike, after inference, to the response.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from serval.core.dataplane import DataPlane
from serval.core.errors import InvalidInputError
from serval.core.model_spec import ModelSpec
from serval.core.tensors.datatypes import DataType
from serval.core.types import InferenceResponse, Tensor

_NOT_SCORES = (DataType.BYTES, DataType.BOOL)


def classify_response(
    dataplane: DataPlane, response: InferenceResponse, counts: Mapping[str, int]
) -> None:
    """``classify`` with the labels of the model that answered (the adapters' one call)."""
    classify(response, counts, output_labels(dataplane.model_spec(response.model_name)))


def output_labels(spec: ModelSpec) -> dict[str, tuple[str, ...]]:
    """The class labels model.yaml declares, by output name."""
    return {output.name: output.labels for output in spec.outputs if output.labels}


def classify(
    response: InferenceResponse,
    counts: Mapping[str, int],
    labels: Mapping[str, Sequence[str]],
) -> None:
    """Replace each output named in ``counts`` by its top-k classes, in place."""
    for index, tensor in enumerate(response.outputs):
        count = counts.get(tensor.name)
        if count:
            response.outputs[index] = top_classes(tensor, count, labels.get(tensor.name, ()))


def top_classes(tensor: Tensor, count: int, labels: Sequence[str] = ()) -> Tensor:
    """``tensor``'s ``count`` highest scores per row, as classification strings."""
    if tensor.datatype in _NOT_SCORES:
        raise InvalidInputError(
            f"output {tensor.name!r}: class_count needs numeric scores; the output is "
            f"{tensor.datatype}"
        )
    data = tensor.data
    rows = data.reshape(1, -1) if data.ndim <= 1 else data.reshape(data.shape[0], -1)
    k = min(count, rows.shape[1])
    # Stable sort of the negated scores: highest first, ties by lower index (NaN last).
    order = np.argsort(-rows.astype(np.float64), axis=1, kind="stable")[:, :k]
    integral = data.dtype.kind in "iu"
    out = np.empty(order.shape, dtype=np.object_)
    for row, indices in enumerate(order):
        for column, cls in enumerate(indices.tolist()):
            out[row, column] = _entry(rows[row, cls], cls, labels, integral=integral)
    shaped = out.reshape(k) if data.ndim <= 1 else out
    return Tensor(tensor.name, DataType.BYTES, shaped, dict(tensor.parameters))


def _entry(score: Any, index: int, labels: Sequence[str], *, integral: bool) -> bytes:
    value = str(int(score)) if integral else f"{float(score):f}"
    if index < len(labels):
        return f"{value}:{index}:{labels[index]}".encode()
    return f"{value}:{index}".encode()
