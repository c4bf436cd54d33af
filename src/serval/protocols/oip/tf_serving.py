"""What TF Serving's two APIs share, V1 REST and gRPC's ``tensorflow.serving`` services: the
names of its dtypes, the signature a request names, and the signature definitions a model's
metadata lists."""

from __future__ import annotations

from serval.core.errors import InvalidInputError
from serval.core.tensors.datatypes import DataType
from serval.core.types import InferenceRequest, ModelMetadata, ServableMetadata, TensorSpec

# The signature TF Serving runs when a request names none.
DEFAULT_SIGNATURE_NAME = "serving_default"
# The request parameter that selects a Python model's signature (runtimes/python).
SIGNATURE_PARAMETER = "signature"
# A SignatureDef's method_name for a predict signature, the only kind serval has.
PREDICT_METHOD = "tensorflow/serving/predict"

# serval's datatypes by TF Serving's DataType names.
TF_DTYPES: dict[DataType, str] = {
    DataType.BOOL: "DT_BOOL",
    DataType.UINT8: "DT_UINT8",
    DataType.UINT16: "DT_UINT16",
    DataType.UINT32: "DT_UINT32",
    DataType.UINT64: "DT_UINT64",
    DataType.INT8: "DT_INT8",
    DataType.INT16: "DT_INT16",
    DataType.INT32: "DT_INT32",
    DataType.INT64: "DT_INT64",
    DataType.FP16: "DT_HALF",
    DataType.FP32: "DT_FLOAT",
    DataType.FP64: "DT_DOUBLE",
    DataType.BYTES: "DT_STRING",
}
DATATYPES: dict[str, DataType] = {name: datatype for datatype, name in TF_DTYPES.items()}


def select_signature(
    request: InferenceRequest, metadata: ServableMetadata, signature_name: str
) -> None:
    """Point ``request`` at the signature TF Serving's ``signature_name`` names. Empty is the
    model's default; ``serving_default`` is too, where the model's signatures are a Python
    model's; any other name must be one of the model's signatures (a Python model's
    ``@signature`` methods, a SavedModel's signature defs), else ``InvalidInputError``."""
    if not signature_name:
        return
    own = bool(metadata.signature_specs)  # the signatures' real names (signature defs)
    if not own and signature_name == DEFAULT_SIGNATURE_NAME:
        return
    if signature_name not in metadata.signatures:
        names = ", ".join(signature_names(metadata))
        raise InvalidInputError(
            f"model {request.model_name!r} has no signature {signature_name!r}; it has: {names}"
        )
    if own and signature_name == metadata.signatures[0] and not metadata.requires_signature:
        return  # the default: requests that name it batch with those that do not
    request.parameters = {**request.parameters, SIGNATURE_PARAMETER: signature_name}


def signature_names(metadata: ModelMetadata | ServableMetadata) -> tuple[str, ...]:
    """The signatures a model's metadata lists: their own names where each declares its
    inputs and outputs (a SavedModel's signature defs); else ``serving_default`` (the
    model's default signature), then its other signatures by name."""
    if metadata.signature_specs:
        return metadata.signatures
    return (DEFAULT_SIGNATURE_NAME, *metadata.signatures[1:])


def signature_defs(
    metadata: ModelMetadata,
) -> list[tuple[str, tuple[TensorSpec, ...], tuple[TensorSpec, ...]]]:
    """``(name, inputs, outputs)`` of each signature def a model's metadata shows: each
    signature's own where they declare them; else every signature takes the model's inputs
    and lists the model's outputs (serval's metadata of a Python model has the outputs of
    all signatures together, not each one's)."""
    if metadata.signature_specs:
        return [(s.name, s.inputs, s.outputs) for s in metadata.signature_specs]
    return [(name, metadata.inputs, metadata.outputs) for name in signature_names(metadata)]
