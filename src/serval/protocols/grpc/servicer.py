"""``inference.GRPCInferenceService``: each RPC decodes, calls the data or control plane, and
encodes. No inference logic lives here."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import grpc.aio

from serval.core.control import ControlPlane
from serval.core.dataplane import DataPlane
from serval.core.errors import DeadlineExceededError, InvalidInputError
from serval.core.records import RequestRecord
from serval.observability.logging import (
    REQUEST_ID_HEADER,
    RequestLogContext,
    begin_request,
    current_request,
)
from serval.protocols.grpc import codec, messages
from serval.protocols.grpc.errors import translate_errors
from serval.protocols.grpc.generated import grpc_service_pb2 as pb
from serval.protocols.grpc.generated import grpc_service_pb2_grpc as pb_grpc
from serval.protocols.grpc.streaming import serve_stream
from serval.protocols.oip.classification import classify_response
from serval.protocols.oip.parameters import take_class_counts
from serval.protocols.oip.triton_load import translate_load_parameters

PROTOCOL = "grpc"
_INFER_RPC = "inference.GRPCInferenceService/ModelInfer"  # the span name
_STREAM_RPC = "inference.GRPCInferenceService/ModelStreamInfer"


def _name(name: str, *, field: str = "name") -> str:
    if not name:
        raise InvalidInputError(f"{field} is empty: name a model")
    return name


def _repository_model(
    request: pb.RepositoryModelLoadRequest | pb.RepositoryModelUnloadRequest,
) -> str:
    """The model a repository request names: ``model_name``, else field 1, where KServe's
    grpc_predict_v2.proto puts the model's name (Triton's ``repository_name``, which serval,
    with one repository, has no other use for)."""
    return _name(request.model_name or request.repository_name, field="model_name")


def _check_deadline(context: grpc.aio.ServicerContext) -> float | None:
    """Seconds left before the client's deadline (None: no deadline); raises if none are."""
    remaining: float | None = context.time_remaining()
    if remaining is not None and remaining <= 0:
        raise DeadlineExceededError("the request's deadline passed before it could run")
    return remaining


def _metadata(context: grpc.aio.ServicerContext) -> dict[str, str]:
    """The request's text metadata (trace context, request id)."""
    return {
        key: value for key, value in context.invocation_metadata() or () if isinstance(value, str)
    }


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    def __init__(
        self,
        dataplane: DataPlane,
        control: ControlPlane,
    ) -> None:
        self._dataplane = dataplane
        self._control = control
        self._sticky_headers = dataplane.sticky_headers  # one mapping, changed in place

    # -- health and metadata ---------------------------------------------------------------

    @translate_errors
    async def ServerLive(  # noqa: N802 - the RPC's name
        self, request: pb.ServerLiveRequest, context: grpc.aio.ServicerContext
    ) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=self._dataplane.live())

    @translate_errors
    async def ServerReady(  # noqa: N802 - the RPC's name
        self, request: pb.ServerReadyRequest, context: grpc.aio.ServicerContext
    ) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self._dataplane.ready().ready)

    @translate_errors
    async def ModelReady(  # noqa: N802 - the RPC's name
        self, request: pb.ModelReadyRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelReadyResponse:
        ready = self._dataplane.model_ready(_name(request.name), request.version or None)
        return pb.ModelReadyResponse(ready=ready)

    @translate_errors
    async def ServerMetadata(  # noqa: N802 - the RPC's name
        self, request: pb.ServerMetadataRequest, context: grpc.aio.ServicerContext
    ) -> pb.ServerMetadataResponse:
        return messages.server_metadata(self._dataplane.server_metadata())

    @translate_errors
    async def ModelMetadata(  # noqa: N802 - the RPC's name
        self, request: pb.ModelMetadataRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelMetadataResponse:
        metadata = self._dataplane.model_metadata(_name(request.name), request.version or None)
        return messages.model_metadata(metadata)

    @translate_errors
    async def ModelConfig(  # noqa: N802 - the RPC's name
        self, request: pb.ModelConfigRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelConfigResponse:
        view = self._dataplane.model_config(_name(request.name), request.version or None)
        return messages.model_config(view)

    @translate_errors
    async def ModelStatistics(  # noqa: N802 - the RPC's name
        self, request: pb.ModelStatisticsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelStatisticsResponse:
        if request.version and not request.name:
            raise InvalidInputError("version is set but name is empty: name a model")
        found = self._dataplane.statistics(request.name or None, request.version or None)
        return messages.model_statistics(found)

    # -- inference -------------------------------------------------------------------------

    @translate_errors
    async def ModelInfer(  # noqa: N802 - the RPC's name
        self, request: pb.ModelInferRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelInferResponse:
        # One record per request, finished on every path (see core.records).
        dataplane = self._dataplane
        record = RequestRecord(PROTOCOL, _INFER_RPC, request.model_name, time.perf_counter_ns())
        metadata = _metadata(context)
        if dataplane.wants_headers:
            record.headers = metadata
        log_context = current_request() or begin_request(metadata.get(REQUEST_ID_HEADER))
        try:
            reply = await self._infer(request, context, record, log_context, metadata)
        except BaseException as exc:
            dataplane.finish(record, exc)
            raise
        dataplane.finish(record)
        await context.send_initial_metadata(((REQUEST_ID_HEADER, log_context.request_id),))
        return reply

    async def ModelStreamInfer(  # noqa: N802 - the RPC's name
        self,
        request_iterator: AsyncIterator[pb.ModelInferRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[pb.ModelStreamInferResponse]:
        # Errors go into each reply's error_message (streaming.py), so no translate_errors.
        metadata = _metadata(context)

        async def answer(request: pb.ModelInferRequest) -> pb.ModelInferResponse:
            # Each request of the stream is a request of its own: its record, its id.
            record = RequestRecord(
                PROTOCOL, _STREAM_RPC, request.model_name, time.perf_counter_ns()
            )
            if self._dataplane.wants_headers:
                record.headers = metadata
            log_context = begin_request(None)
            try:
                reply = await self._infer(request, context, record, log_context, metadata)
            except BaseException as exc:
                self._dataplane.finish(record, exc)
                raise
            self._dataplane.finish(record)
            return reply

        async for reply in serve_stream(request_iterator, answer):
            yield reply

    async def _infer(
        self,
        request: pb.ModelInferRequest,
        context: grpc.aio.ServicerContext,
        record: RequestRecord,
        log_context: RequestLogContext,
        metadata: dict[str, str],
    ) -> pb.ModelInferResponse:
        _check_deadline(context)
        inference = codec.decode_request(request)
        inference.record = record
        class_counts = take_class_counts(inference)
        sticky = self._sticky_headers
        if sticky and (sticky_key := sticky.get(inference.model_name)) is not None:
            inference.routing_key = metadata.get(sticky_key)  # metadata keys are lower-case
        # The client's id (the request's `id`, else x-request-id metadata) or the server's:
        # on the response and in its metadata, and the record's join key.
        log_context.adopt(inference.id)
        if inference.id is None:
            inference.id = log_context.request_id
        remaining = _check_deadline(context)  # decoding a large request takes time too
        if remaining is not None:
            # The data plane answers DEADLINE_EXCEEDED at the deadline; a model's queue drops
            # the request if the deadline passes before it runs.
            inference.tighten_deadline(time.monotonic() + remaining)
        response = await self._dataplane.infer(inference)
        if class_counts:
            classify_response(self._dataplane, response, class_counts)
        return codec.encode_response(response)

    # -- model repository ------------------------------------------------------------------

    @translate_errors
    async def RepositoryIndex(  # noqa: N802 - the RPC's name
        self, request: pb.RepositoryIndexRequest, context: grpc.aio.ServicerContext
    ) -> pb.RepositoryIndexResponse:
        entries = await self._control.index(ready_only=request.ready)
        return messages.repository_index(entries)

    @translate_errors
    async def RepositoryModelLoad(  # noqa: N802 - the RPC's name
        self, request: pb.RepositoryModelLoadRequest, context: grpc.aio.ServicerContext
    ) -> pb.RepositoryModelLoadResponse:
        name = _repository_model(request)
        parameters = codec.decode_parameters(request.parameters, where="load request")
        await self._control.load(name, translate_load_parameters(name, parameters))
        # KServe's clients read these fields; Triton's response is empty and its clients skip them.
        return pb.RepositoryModelLoadResponse(model_name=name, isLoaded=True)

    @translate_errors
    async def RepositoryModelUnload(  # noqa: N802 - the RPC's name
        self, request: pb.RepositoryModelUnloadRequest, context: grpc.aio.ServicerContext
    ) -> pb.RepositoryModelUnloadResponse:
        name = _repository_model(request)
        await self._control.unload(name)
        return pb.RepositoryModelUnloadResponse(model_name=name, isUnloaded=True)
