"""TF Serving's gRPC API on serval's gRPC port: ``tensorflow.serving.PredictionService``
(Predict, GetModelMetadata) and ``tensorflow.serving.ModelService`` (GetModelStatus), from the
protos of ``tensorflow-serving-api`` (vendored under proto/, compiled by scripts/gen_grpc.py)."""

from __future__ import annotations

import grpc.aio
from google.protobuf.descriptor import FileDescriptor

from serval.core.dataplane import DataPlane
from serval.protocols.grpc.generated.tensorflow.core.framework import (
    tensor_pb2,
    tensor_shape_pb2,
    types_pb2,
)
from serval.protocols.grpc.generated.tensorflow.core.protobuf import error_codes_pb2, meta_graph_pb2
from serval.protocols.grpc.generated.tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_pb2,
    model_service_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2,
    prediction_service_pb2_grpc,
    status_pb2,
)
from serval.protocols.grpc.generated.xla.tsl.protobuf import error_codes_pb2 as tsl_error_codes_pb2
from serval.protocols.grpc.tfserving.servicer import ModelServicer, PredictionServicer

__all__ = ["FILES", "SERVICES", "add_services"]

PREDICTION_SERVICE = prediction_service_pb2.DESCRIPTOR.services_by_name[
    "PredictionService"
].full_name
MODEL_SERVICE = model_service_pb2.DESCRIPTOR.services_by_name["ModelService"].full_name
SERVICES = (PREDICTION_SERVICE, MODEL_SERVICE)

# Every file of the two services, each after the files it imports (what server reflection
# serves; the well-known types it imports are in protobuf's default pool).
FILES: tuple[FileDescriptor, ...] = tuple(
    module.DESCRIPTOR
    for module in (
        types_pb2,
        tensor_shape_pb2,
        tensor_pb2,
        meta_graph_pb2,
        tsl_error_codes_pb2,
        error_codes_pb2,
        model_pb2,
        status_pb2,
        predict_pb2,
        get_model_metadata_pb2,
        get_model_status_pb2,
        prediction_service_pb2,
        model_service_pb2,
    )
)


def add_services(server: grpc.aio.Server, dataplane: DataPlane) -> None:
    """Serve TF Serving's PredictionService and ModelService on ``server``."""
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(  # type: ignore[no-untyped-call]
        PredictionServicer(dataplane), server
    )
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(  # type: ignore[no-untyped-call]
        ModelServicer(dataplane), server
    )
