"""``inference.GRPCInferenceService``: each RPC decodes, calls the data or control plane, and
encodes. No inference logic lives here."""

from __future__ import annotations

import time

import grpc.aio

from serval.core.control import ControlPlane
from serval.core.dataplane import DataPlane
from serval.core.deadlines import tighten_deadline
from serval.core.errors import DeadlineExceededError, InvalidInputError
from serval.core.types import InferenceResponse
from serval.observability.logging import (
    REQUEST_ID_HEADER,
    adopt_request_id,
    begin_request,
    current_request,
)
from serval.observability.requests import RequestObserver
from serval.protocols.grpc import codec, messages
from serval.protocols.grpc.errors import translate_errors
from serval.protocols.grpc.generated import grpc_service_pb2 as pb
from serval.protocols.grpc.generated import grpc_service_pb2_grpc as pb_grpc

PROTOCOL = "grpc"
_INFER_RPC = "inference.GRPCInferenceService/ModelInfer"  # the span name


def _name(name: str, *, field: str = "name") -> str:
    if not name:
        raise InvalidInputError(f"{field} is empty: name a model")
    return name


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
        *,
        observer: RequestObserver | None = None,
    ) -> None:
        self._dataplane = dataplane
        self._control = control
        self._observer = observer if observer is not None else RequestObserver()

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
        metadata = _metadata(context)
        log_context = current_request() or begin_request(metadata.get(REQUEST_ID_HEADER))
        started = time.perf_counter_ns()  # reported once, at the end (observability.requests)
        try:
            reply, response, decoded, inferred = await self._infer(request, context)
        except BaseException as exc:
            self._report(request, metadata, started, 0, 0, None, exc)
            raise
        self._report(request, metadata, started, decoded, inferred, response, None)
        await context.send_initial_metadata(((REQUEST_ID_HEADER, log_context.request_id),))
        return reply

    def _report(
        self,
        request: pb.ModelInferRequest,
        metadata: dict[str, str],
        started: int,
        decoded: int,
        inferred: int,
        response: InferenceResponse | None,
        error: BaseException | None,
    ) -> None:
        observer = self._observer
        observer.finished(
            PROTOCOL,
            _INFER_RPC,
            request.model_name,
            started,
            decoded,
            inferred,
            response,
            error,
            metadata if observer.wants_trace_context else None,
        )

    async def _infer(
        self, request: pb.ModelInferRequest, context: grpc.aio.ServicerContext
    ) -> tuple[pb.ModelInferResponse, InferenceResponse, int, int]:
        """The reply, and for observers the response and when decoding and inference ended."""
        _check_deadline(context)
        inference = codec.decode_request(request)
        inference.context = PROTOCOL  # this adapter reports the request
        adopt_request_id(inference.id)
        decoded = time.perf_counter_ns()
        remaining = _check_deadline(context)  # decoding a large request takes time too
        if remaining is not None:
            # The data plane answers DEADLINE_EXCEEDED at the deadline; a model's queue drops
            # the request if the deadline passes before it runs.
            tighten_deadline(inference, time.monotonic() + remaining)
        response = await self._dataplane.infer(inference)
        inferred = time.perf_counter_ns()
        return codec.encode_response(response), response, decoded, inferred

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
        name = _name(request.model_name, field="model_name")
        await self._control.load(name, messages.load_config(request.parameters))
        return pb.RepositoryModelLoadResponse()

    @translate_errors
    async def RepositoryModelUnload(  # noqa: N802 - the RPC's name
        self, request: pb.RepositoryModelUnloadRequest, context: grpc.aio.ServicerContext
    ) -> pb.RepositoryModelUnloadResponse:
        await self._control.unload(_name(request.model_name, field="model_name"))
        return pb.RepositoryModelUnloadResponse()
