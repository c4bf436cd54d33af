"""Checks a request against what the servable declares, with errors a client can act on."""

from __future__ import annotations

from serval.core.errors import InvalidInputError
from serval.core.tensors.signatures import signature_metadata
from serval.core.types import InferenceRequest, ServableMetadata


def validate_request(request: InferenceRequest, metadata: ServableMetadata) -> None:
    """Raise ``InvalidInputError`` naming the first input or output that does not fit (those
    of the signature the request names, where signatures declare their own)."""
    metadata = signature_metadata(metadata, request.parameters)
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
