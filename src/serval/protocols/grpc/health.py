"""The standard ``grpc.health.v1.Health`` service, answered live from the data plane.

* service ``""`` (what Kubernetes gRPC probes ask) and ``inference.GRPCInferenceService``:
  SERVING when the server is ready, else NOT_SERVING;
* a model name: SERVING when the model can serve, NOT_SERVING when it is known but cannot;
  ``Check`` of an unknown name ends with NOT_FOUND, ``Watch`` answers SERVICE_UNKNOWN;
* ``List``: the status of both server names and of every model the server knows;
* while the server drains (``DataPlane.begin_draining``, SIGTERM's delay) and after
  ``enter_graceful_shutdown`` everything is NOT_SERVING, so load balancers drain.

The messages are serval's generated ``grpc.health.v1`` (proto/grpc_health_v1.proto, the
published definition with ``List``), wire-identical to every other health client's.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import grpc
import grpc.aio

from serval.core.dataplane import DataPlane
from serval.core.errors import InvalidInputError, ModelNotFoundError
from serval.protocols.grpc.generated import grpc_health_v1_pb2 as health_pb2
from serval.protocols.grpc.generated import grpc_health_v1_pb2_grpc as health_pb2_grpc

SERVER_SERVICES = frozenset({"", "inference.GRPCInferenceService"})
Status = health_pb2.HealthCheckResponse.ServingStatus
SERVING: Status = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING: Status = health_pb2.HealthCheckResponse.NOT_SERVING
SERVICE_UNKNOWN: Status = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN


class HealthServicer(health_pb2_grpc.HealthServicer):
    """Reads readiness on every call; ``Watch`` re-reads it every ``watch_interval_s`` and
    sends a message whenever it changed."""

    def __init__(self, dataplane: DataPlane, *, watch_interval_s: float = 1.0) -> None:
        self._dataplane = dataplane
        self._watch_interval_s = watch_interval_s
        self._shutting_down = asyncio.Event()

    def status(self, service: str) -> Status | None:
        """The status of ``service``; None when no server part or model has that name."""
        if self._shutting_down.is_set():
            return NOT_SERVING
        if service in SERVER_SERVICES:
            return SERVING if self._dataplane.ready().ready else NOT_SERVING
        try:
            ready = self._dataplane.model_ready(service)
        except (ModelNotFoundError, InvalidInputError):
            return None
        # Draining: a model still answers requests, but load balancers must stop sending.
        return SERVING if ready and not self._dataplane.draining else NOT_SERVING

    async def Check(  # noqa: N802 - the RPC's name
        self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext
    ) -> health_pb2.HealthCheckResponse:
        status = self.status(request.service)
        if status is None:
            await context.abort(
                grpc.StatusCode.NOT_FOUND, f"unknown service or model {request.service!r}"
            )
        return health_pb2.HealthCheckResponse(status=status)

    async def List(  # noqa: N802 - the RPC's name
        self, request: health_pb2.HealthListRequest, context: grpc.aio.ServicerContext
    ) -> health_pb2.HealthListResponse:
        response = health_pb2.HealthListResponse()
        for service in (*sorted(SERVER_SERVICES), *self._dataplane.model_names()):
            status = self.status(service)
            if status is not None:  # None: a model removed since the names were read
                response.statuses[service].status = status
        return response

    async def Watch(  # noqa: N802 - the RPC's name
        self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[health_pb2.HealthCheckResponse]:
        last: Status | None = None
        while True:
            status = self.status(request.service)
            current = SERVICE_UNKNOWN if status is None else status
            if current != last:
                yield health_pb2.HealthCheckResponse(status=current)
                last = current
            if self._shutting_down.is_set():
                return  # the last message said NOT_SERVING; end the stream
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._shutting_down.wait(), self._watch_interval_s)

    def enter_graceful_shutdown(self) -> None:
        """Report NOT_SERVING from now on and end every ``Watch`` stream."""
        self._shutting_down.set()
