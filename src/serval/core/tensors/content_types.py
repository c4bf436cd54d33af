"""MLServer's request conventions (its codecs' ``content_type`` markers), so that a client of
MLServer or Seldon Core works unchanged.

A request marked ``content_type: "pd"`` (``PandasCodec``) sends one input per column, named by
column, each ``[N]`` or ``[N, 1]``: the columns are stacked into the model's ``[-1, n]`` input
by its column names (``inputs[].columns`` in model.yaml, else the ``feature_names`` of a model
with one input). A request or input marked ``"np"`` (``NumpyCodec``) or ``"str"``
(``StringCodec``) may send ``[N, 1]`` where the model takes ``[-1]`` (the codecs add that
dimension) and, when it has one input and the model one too, name it as it likes (MLServer's
``input-1``: the codecs decode the first input whatever its name). Marked values convert to
the model's datatype when no value changes (``core.tensors.casting``). The answer to a marked
request says how to decode it: each output ``"np"`` or ``"str"``, and ``"pd"`` for the
response to a ``"pd"`` request. A request without markers is validated strictly, as ever.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from serval.core.errors import InvalidInputError
from serval.core.tensors.casting import cast_values
from serval.core.tensors.datatypes import DataType
from serval.core.types import (
    InferenceRequest,
    InferenceResponse,
    ParameterValue,
    ServableMetadata,
    Tensor,
    TensorSpec,
)

CONTENT_TYPE = "content_type"
PANDAS = "pd"
NUMPY = "np"
STRING = "str"
# The markers understood; any other content type is left to the model, as before.
KNOWN = frozenset({PANDAS, NUMPY, STRING})
# Where a runtime reports the feature names of its single input (runtimes.tabular).
FEATURE_NAMES = "feature_names"


def take_content_type(request: InferenceRequest, parameters: dict[str, ParameterValue]) -> None:
    """Set ``request.content_type`` from its markers, taking a known one off ``parameters``
    (the request's own dict, not yet shared; a model's batches group requests by the rest):
    the request's own content type, "" when only an input carries one, else None."""
    marker = parameters.get(CONTENT_TYPE) if parameters else None
    if isinstance(marker, str) and marker in KNOWN:
        del parameters[CONTENT_TYPE]
        request.content_type = marker
        return
    for tensor in request.inputs:
        if _marked(tensor):
            request.content_type = ""
            return


def apply_content_types(request: InferenceRequest, metadata: ServableMetadata) -> None:
    """Rewrite a marked request's inputs into what the model declares (see the module's
    docstring); ``InvalidInputError`` naming the columns or inputs that do not fit."""
    inputs = request.inputs
    if request.content_type == PANDAS:
        places = _places(metadata)
        if places or not all(metadata.input(t.name) for t in inputs):
            request.inputs = _from_columns(request, metadata, places)
            return
    whole = request.content_type in KNOWN
    if len(inputs) == 1 and len(metadata.inputs) == 1 and metadata.input(inputs[0].name) is None:
        only = inputs[0]
        if whole or _marked(only):
            inputs = [Tensor(metadata.inputs[0].name, only.datatype, only.data, only.parameters)]
    fitted = []
    for tensor in inputs:
        spec = metadata.input(tensor.name)
        fitted.append(_fit(tensor, spec) if spec and (whole or _marked(tensor)) else tensor)
    request.inputs = fitted


def mark_response(response: InferenceResponse, content_type: str) -> None:
    """Say how MLServer's codecs decode each output, and the response to a "pd" request."""
    response.outputs = [_marked_output(tensor) for tensor in response.outputs]
    if content_type == PANDAS:
        response.parameters = {**response.parameters, CONTENT_TYPE: PANDAS}


def _marked_output(tensor: Tensor) -> Tensor:
    if CONTENT_TYPE in tensor.parameters:
        return tensor
    marker = STRING if tensor.datatype is DataType.BYTES else NUMPY
    return Tensor(
        tensor.name, tensor.datatype, tensor.data, {**tensor.parameters, CONTENT_TYPE: marker}
    )


def _marked(tensor: Tensor) -> bool:
    return bool(tensor.parameters) and tensor.parameters.get(CONTENT_TYPE) in KNOWN


def _fit(tensor: Tensor, spec: TensorSpec) -> Tensor:
    """``tensor`` without the trailing 1 the codecs add, in ``spec``'s datatype."""
    data = tensor.data
    if (
        data.ndim == len(spec.shape) + 1
        and data.shape[-1] == 1
        and not spec.accepts_shape(data.shape)
    ):
        data = data.reshape(data.shape[:-1])
    what = f"input {tensor.name!r}"
    data = cast_values(data, tensor.datatype, spec.datatype, what)
    return Tensor(tensor.name, spec.datatype, data, tensor.parameters)


def columns_of(spec: TensorSpec, metadata: ServableMetadata) -> tuple[str, ...]:
    """``spec``'s column names: declared in model.yaml, else the model's feature names when
    it has this one input; () when unknown."""
    if spec.columns:
        return spec.columns
    names = metadata.parameters.get(FEATURE_NAMES)
    if len(metadata.inputs) == 1 and isinstance(names, str) and names:
        return tuple(names.split(","))
    return ()


def _places(metadata: ServableMetadata) -> dict[str, tuple[TensorSpec, int]]:
    """Column name -> the input it belongs to and its index there."""
    places: dict[str, tuple[TensorSpec, int]] = {}
    for spec in metadata.inputs:
        for index, column in enumerate(columns_of(spec, metadata)):
            places.setdefault(column, (spec, index))
    return places


def _from_columns(
    request: InferenceRequest,
    metadata: ServableMetadata,
    places: dict[str, tuple[TensorSpec, int]],
) -> list[Tensor]:
    """A "pd" request's inputs: the columns stacked into the inputs they belong to (a column
    may share its name with an input), the others named as the model's inputs kept."""
    if not places:
        expected = ", ".join(repr(s.name) for s in metadata.inputs)
        raise InvalidInputError(
            f"model {request.model_name!r} does not know its column names, so a "
            f'content_type "pd" request cannot be mapped onto its inputs ({expected}): declare '
            f"inputs[].columns in model.yaml, or send the inputs by their names"
        )
    kept: list[Tensor] = []
    given: dict[str, tuple[TensorSpec, dict[int, Tensor]]] = {}
    unknown: list[str] = []
    for tensor in request.inputs:
        direct = metadata.input(tensor.name)
        if tensor.name in places:
            owner, index = places[tensor.name]
            columns = given.setdefault(owner.name, (owner, {}))[1]
            if index in columns:
                raise InvalidInputError(f"column {tensor.name!r} is given more than once")
            columns[index] = tensor
        elif direct is not None:
            kept.append(_fit(tensor, direct))
        else:
            unknown.append(tensor.name)
    if unknown:
        known = ", ".join(places)
        raise InvalidInputError(
            f"unknown column(s) {', '.join(repr(n) for n in unknown)} for model "
            f"{request.model_name!r}; its columns are: {known}"
        )
    for owner, columns in given.values():
        kept.append(_stack(owner, columns_of(owner, metadata), columns))
    return kept


def _stack(spec: TensorSpec, names: tuple[str, ...], columns: dict[int, Tensor]) -> Tensor:
    missing = [names[i] for i in range(len(names)) if i not in columns]
    if missing:
        raise InvalidInputError(
            f"missing column(s) {', '.join(repr(n) for n in missing)} of input {spec.name!r} "
            f"(it takes the columns {', '.join(names)})"
        )
    first = columns[0]
    rows = _column(first).shape[0]
    out: np.ndarray[Any, Any] = np.empty((rows, len(names)), dtype=spec.datatype.numpy_dtype)
    for index, tensor in sorted(columns.items()):
        values = _column(tensor)
        if values.shape[0] != rows:
            raise InvalidInputError(
                f"column {tensor.name!r} has {values.shape[0]} rows, but column "
                f"{first.name!r} has {rows}: every column has one value per row"
            )
        out[:, index] = cast_values(
            values, tensor.datatype, spec.datatype, f"column {tensor.name!r}"
        )
    return Tensor(spec.name, spec.datatype, out)


def _column(tensor: Tensor) -> np.ndarray[Any, Any]:
    """A column's values: a ``[N]`` or ``[N, 1]`` tensor as ``[N]``."""
    data = tensor.data
    if data.ndim == 1:
        return data
    if data.ndim == 2 and data.shape[1] == 1:
        return data.reshape(-1)
    raise InvalidInputError(
        f"column {tensor.name!r}: a column's shape is [N] or [N, 1], received {list(data.shape)}"
    )
