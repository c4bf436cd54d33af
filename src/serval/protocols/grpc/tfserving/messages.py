"""The core's answers as TF Serving's messages: model specs, signature definitions and version
statuses."""

from __future__ import annotations

from serval.core.errors import InvalidInputError
from serval.core.lifecycle.states import ServableState, ServableStatus
from serval.core.types import ModelMetadata, TensorSpec
from serval.protocols.grpc.generated.tensorflow.core.protobuf import error_codes_pb2, meta_graph_pb2
from serval.protocols.grpc.generated.tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_pb2,
)
from serval.protocols.grpc.tfserving.tensors import dtype_of
from serval.protocols.oip.tf_serving import PREDICT_METHOD, signature_defs
from serval.security.access import public_message

# The one metadata field TF Serving defines.
SIGNATURE_DEF_FIELD = "signature_def"

_STATE: dict[ServableState, int] = {
    state: get_model_status_pb2.ModelVersionStatus.State.Value(state.value)
    for state in ServableState
}


def model_name(spec: model_pb2.ModelSpec) -> str:
    if not spec.name:
        raise InvalidInputError("model_spec.name is empty: name a model")
    return spec.name


def version_choice(spec: model_pb2.ModelSpec) -> tuple[str | None, str | None]:
    """``(version, label)`` a model spec names; both None: the data plane chooses."""
    choice = spec.WhichOneof("version_choice")
    if choice == "version":
        return str(spec.version.value), None
    if choice == "version_label":
        if not spec.version_label:
            raise InvalidInputError("model_spec.version_label is empty")
        return None, spec.version_label
    return None, None


def answered_spec(
    spec: model_pb2.ModelSpec, name: str, version: str | None, signature_name: str
) -> model_pb2.ModelSpec:
    """The model spec a response carries: the model, the version that answered, the
    signature that ran."""
    answered = model_pb2.ModelSpec(name=name, signature_name=signature_name)
    if version is not None and version.lstrip("-").isdigit():
        answered.version.value = int(version)
    elif spec.WhichOneof("version_choice") == "version_label":
        answered.version_label = spec.version_label
    return answered


def _tensor_info(spec: TensorSpec) -> meta_graph_pb2.TensorInfo:
    info = meta_graph_pb2.TensorInfo(name=spec.name, dtype=dtype_of(spec.datatype))
    for size in spec.shape:
        info.tensor_shape.dim.add(size=size)
    return info


def signature_def_map(metadata: ModelMetadata) -> get_model_metadata_pb2.SignatureDefMap:
    """The model's signature defs (``tf_serving.signature_defs``)."""
    found = get_model_metadata_pb2.SignatureDefMap()
    for name, inputs, outputs in signature_defs(metadata):
        signature = found.signature_def[name]
        signature.method_name = PREDICT_METHOD
        for spec in inputs:
            signature.inputs[spec.name].CopyFrom(_tensor_info(spec))
        for spec in outputs:
            signature.outputs[spec.name].CopyFrom(_tensor_info(spec))
    return found


def model_status(
    statuses: list[ServableStatus],
) -> get_model_status_pb2.GetModelStatusResponse:
    """Each version's state, and its error (UNKNOWN with the message, as TF Serving reports a
    failed load) or OK."""
    response = get_model_status_pb2.GetModelStatusResponse()
    for status in statuses:
        entry = response.model_version_status.add(
            version=status.id.version, state=_STATE[status.state]
        )
        if status.error:
            entry.status.error_code = error_codes_pb2.UNKNOWN
            entry.status.error_message = public_message(status.error, "failed to load")
        else:
            entry.status.error_code = error_codes_pb2.OK
    return response
