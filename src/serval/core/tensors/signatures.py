"""Which inputs and outputs a request is checked against when a servable's signatures each
declare their own (a SavedModel's signature defs): the one its ``signature`` parameter names.
A module of its own so that adapters that decode by signature (TF Serving's V1 REST) reach it
without reaching the request validation."""

from __future__ import annotations

from serval.core.errors import InvalidInputError
from serval.core.types import Parameters, ServableMetadata

# The request parameter that selects one of a servable's signatures.
SIGNATURE_PARAMETER = "signature"


def signature_metadata(metadata: ServableMetadata, parameters: Parameters) -> ServableMetadata:
    """The inputs and outputs a request with ``parameters`` is checked against: those of the
    signature it names where signatures declare their own, else ``metadata`` itself. Raises
    ``InvalidInputError`` for an unknown signature, or none named where there is no default."""
    if not metadata.signature_specs:
        return metadata
    name = parameters.get(SIGNATURE_PARAMETER)
    if name is None:
        if metadata.requires_signature:
            raise InvalidInputError(
                f"the model has no default signature: name one with the parameter "
                f"{SIGNATURE_PARAMETER!r} (signature_name in TF Serving's APIs); it has: "
                f"{', '.join(metadata.signatures)}"
            )
        return metadata
    view = metadata.signature_view(name) if isinstance(name, str) else None
    if view is None:
        raise InvalidInputError(
            f"unknown signature {name!r}; the model has: {', '.join(metadata.signatures)}"
        )
    return view
