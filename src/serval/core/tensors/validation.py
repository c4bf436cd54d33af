"""Checks a request against what the servable declares, with errors a client can act on."""

from __future__ import annotations

from collections.abc import Sequence

from serval.core.errors import InvalidInputError
from serval.core.types import InferenceRequest, ServableMetadata

# What a request's shape may say: numpy handles at most 64 dimensions, and no request can
# carry a dimension past 2**31 - 1 elements (only an empty tensor could name one).
MAX_DIMENSIONS = 32
MAX_DIMENSION = 2**31 - 1


def check_shape(shape: Sequence[int], what: str) -> None:
    """Raise ``InvalidInputError`` for a shape no tensor of a request can have (each
    dimension already a non-negative int)."""
    if len(shape) > MAX_DIMENSIONS:
        raise InvalidInputError(
            f"{what}: shape has {len(shape)} dimensions; at most {MAX_DIMENSIONS} are supported"
        )
    for dim in shape:
        if dim > MAX_DIMENSION:
            raise InvalidInputError(f"{what}: shape dimension {dim} is larger than {MAX_DIMENSION}")


def validate_request(request: InferenceRequest, metadata: ServableMetadata) -> None:
    """Raise ``InvalidInputError`` naming the first input or output that does not fit."""
    seen: set[str] = set()
    for tensor in request.inputs:
        spec = metadata.input(tensor.name)
        if spec is None:
            expected = ", ".join(s.name for s in metadata.inputs)
            raise InvalidInputError(
                f"unknown input {tensor.name!r} for model {request.model_name!r}; "
                f"expected inputs: {expected}"
            )
        if tensor.name in seen:
            raise InvalidInputError(f"input {tensor.name!r} is given more than once")
        seen.add(tensor.name)
        if tensor.datatype is not spec.datatype:
            raise InvalidInputError(
                f"input {tensor.name!r}: expected datatype {spec.datatype}, "
                f"received {tensor.datatype}"
            )
        if not spec.accepts_shape(tensor.shape):
            raise InvalidInputError(
                f"input {tensor.name!r}: expected shape {list(spec.shape)} "
                f"(-1 = any size), received {list(tensor.shape)}"
            )
    missing = (
        [spec.name for spec in metadata.inputs if spec.name not in seen]
        if len(seen) != len(metadata.inputs)
        else []
    )
    if missing:
        raise InvalidInputError(
            f"missing input(s) {', '.join(repr(m) for m in missing)} for model "
            f"{request.model_name!r}"
        )
    if request.outputs is not None:
        if not request.outputs:  # `"outputs": []` asks for nothing in particular: all of them
            request.outputs = None
            return
        named: set[str] = set()
        for output in request.outputs:
            if output.name in named:
                raise InvalidInputError(f"output {output.name!r} is requested more than once")
            named.add(output.name)
            if metadata.output(output.name) is None:
                expected = ", ".join(s.name for s in metadata.outputs)
                raise InvalidInputError(
                    f"unknown output {output.name!r} for model {request.model_name!r}; "
                    f"expected outputs: {expected}"
                )
