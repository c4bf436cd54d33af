"""``tensorflow.serving.PredictionService`` (Predict, GetModelMetadata) and
``tensorflow.serving.ModelService`` (GetModelStatus): each RPC decodes, calls the data plane as
TF Serving's V1 REST API does (versions, labels, signatures alike), and encodes."""

from __future__ import annotations

import time

import grpc.aio

from serval.core.dataplane import DataPlane
from serval.core.errors import DeadlineExceededError, InvalidInputError, ServalError
from serval.core.records import RequestRecord
from serval.core.types import InferenceRequest, RequestedOutput
from serval.observability.logging import REQUEST_ID_HEADER, begin_request, current_request
from serval.protocols.grpc.errors import translate_errors
from serval.protocols.grpc.generated.tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)
from serval.protocols.grpc.tfserving import messages
from serval.protocols.grpc.tfserving.tensors import decode_tensor, encode_tensor
from serval.protocols.oip.tf_serving import DEFAULT_SIGNATURE_NAME, select_signature

PROTOCOL = "grpc"
_PREDICT_RPC = "tensorflow.serving.PredictionService/Predict"  # the span name


def _metadata(context: grpc.aio.ServicerContext) -> dict[str, str]:
    """The request's text metadata (trace context, request id)."""
    return {
        key: value for key, value in context.invocation_metadata() or () if isinstance(value, str)
    }


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, dataplane: DataPlane) -> None:
        self._dataplane = dataplane

    @translate_errors
    async def Predict(  # noqa: N802 - the RPC's name
        self, request: predict_pb2.PredictRequest, context: grpc.aio.ServicerContext
    ) -> predict_pb2.PredictResponse:
        # One record per request, finished on every path (see core.records).
        dataplane = self._dataplane
        name = request.model_spec.name
        record = RequestRecord(PROTOCOL, _PREDICT_RPC, name, time.perf_counter_ns())
        metadata = _metadata(context)
        if dataplane.wants_headers:
            record.headers = metadata
        log_context = current_request() or begin_request(metadata.get(REQUEST_ID_HEADER))
        try:
            reply = await self._predict(request, context, record, metadata)
        except BaseException as exc:
            dataplane.finish(record, exc)
            raise
        dataplane.finish(record)
        await context.send_initial_metadata(((REQUEST_ID_HEADER, log_context.request_id),))
        return reply

    async def _predict(
        self,
        request: predict_pb2.PredictRequest,
        context: grpc.aio.ServicerContext,
        record: RequestRecord,
        metadata: dict[str, str],
    ) -> predict_pb2.PredictResponse:
        dataplane = self._dataplane
        spec = request.model_spec
        name = messages.model_name(spec)
        version, label = messages.version_choice(spec)
        remaining = context.time_remaining()
        if remaining is not None and remaining <= 0:
            raise DeadlineExceededError("the request's deadline passed before it could run")
        log_context = current_request()
        inference = InferenceRequest(
            model_name=name,
            model_version=version,
            inputs=[decode_tensor(key, tensor) for key, tensor in request.inputs.items()],
            id=log_context.request_id if log_context is not None else None,
            record=record,
        )
        if request.output_filter:
            if len(set(request.output_filter)) != len(request.output_filter):
                raise InvalidInputError("output_filter names an output more than once")
            inference.outputs = [RequestedOutput(output) for output in request.output_filter]
        sticky = dataplane.sticky_headers  # empty unless a traffic policy keeps users
        if sticky and (sticky_key := sticky.get(name)) is not None:
            inference.routing_key = metadata.get(sticky_key)  # metadata keys are lower-case
        if remaining is not None:
            inference.tighten_deadline(time.monotonic() + remaining)
        # The signature is checked against the version that runs the request.
        async with dataplane.lease(inference, label) as handle:
            try:
                select_signature(inference, handle.metadata, spec.signature_name)
                response = await dataplane.infer(inference, handle=handle)
            except ServalError as exc:  # on this version: its error says so
                if exc.servable is None:
                    exc.servable = handle.id
                raise
        reply = predict_pb2.PredictResponse()
        reply.model_spec.CopyFrom(
            messages.answered_spec(
                spec, name, response.model_version, spec.signature_name or DEFAULT_SIGNATURE_NAME
            )
        )
        for tensor in response.outputs:
            encode_tensor(tensor, reply.outputs[tensor.name])
        return reply

    @translate_errors
    async def GetModelMetadata(  # noqa: N802 - the RPC's name
        self,
        request: get_model_metadata_pb2.GetModelMetadataRequest,
        context: grpc.aio.ServicerContext,
    ) -> get_model_metadata_pb2.GetModelMetadataResponse:
        spec = request.model_spec
        name = messages.model_name(spec)
        version, label = messages.version_choice(spec)
        unknown = [f for f in request.metadata_field if f != messages.SIGNATURE_DEF_FIELD]
        if unknown:
            raise InvalidInputError(
                f"metadata_field {unknown[0]!r} is not supported; "
                f"expected {messages.SIGNATURE_DEF_FIELD!r}"
            )
        if label is not None:
            version = str(self._dataplane.label_version(name, label))
        metadata = self._dataplane.model_metadata(name, version)
        if version is None and metadata.versions:
            version = metadata.versions[-1]
        reply = get_model_metadata_pb2.GetModelMetadataResponse()
        reply.model_spec.CopyFrom(messages.answered_spec(spec, name, version, ""))
        reply.metadata[messages.SIGNATURE_DEF_FIELD].Pack(messages.signature_def_map(metadata))
        return reply


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, dataplane: DataPlane) -> None:
        self._dataplane = dataplane

    @translate_errors
    async def GetModelStatus(  # noqa: N802 - the RPC's name
        self,
        request: get_model_status_pb2.GetModelStatusRequest,
        context: grpc.aio.ServicerContext,
    ) -> get_model_status_pb2.GetModelStatusResponse:
        spec = request.model_spec
        name = messages.model_name(spec)
        version, label = messages.version_choice(spec)
        if label is not None:
            version = str(self._dataplane.label_version(name, label))
        return messages.model_status(self._dataplane.model_status(name, version))
