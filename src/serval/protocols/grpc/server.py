"""The gRPC server: ``inference.GRPCInferenceService``, TF Serving's ``tensorflow.serving``
services, ``grpc.health.v1.Health`` and server reflection (v1 and v1alpha) on one
``grpc.aio`` server, sharing the process's asyncio loop with REST."""

from __future__ import annotations

import errno
import logging
import socket

import grpc
import grpc.aio
from google.protobuf import any_pb2, descriptor_pool, wrappers_pb2
from grpc_reflection.v1alpha import reflection_pb2

from serval.core.control import ControlPlane
from serval.core.dataplane import DataPlane
from serval.core.errors import PortInUseError
from serval.protocols.grpc import tfserving
from serval.protocols.grpc.access_log import AccessLogInterceptor
from serval.protocols.grpc.auth import AuthInterceptor
from serval.protocols.grpc.generated import grpc_health_v1_pb2 as health_pb2
from serval.protocols.grpc.generated import grpc_health_v1_pb2_grpc as health_pb2_grpc
from serval.protocols.grpc.generated import grpc_reflection_v1_pb2 as reflection_v1_pb2
from serval.protocols.grpc.generated import grpc_service_pb2 as pb
from serval.protocols.grpc.generated import grpc_service_pb2_grpc as pb_grpc
from serval.protocols.grpc.generated import model_config_pb2 as config_pb
from serval.protocols.grpc.health import HealthServicer
from serval.protocols.grpc.reflection import enable_reflection
from serval.protocols.grpc.servicer import InferenceServicer
from serval.security.access import AccessPolicy
from serval.security.tls import TlsFiles

logger = logging.getLogger(__name__)

DEFAULT_MAX_MESSAGE_BYTES = 64 * 2**20
INFERENCE_SERVICE = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name
HEALTH_SERVICE = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name


def _reflection_pool() -> descriptor_pool.DescriptorPool:
    """Every file a reflection client may ask for. serval's messages (health and reflection
    v1 included) live in their own pool (see generated/_pool.py), grpcio-reflection's v1alpha
    messages in protobuf's default one."""
    pool = descriptor_pool.DescriptorPool()
    for module in (
        config_pb,
        pb,
        health_pb2,
        reflection_v1_pb2,
        reflection_pb2,
        any_pb2,
        wrappers_pb2,
    ):
        pool.AddSerializedFile(module.DESCRIPTOR.serialized_pb)
    for file in tfserving.FILES:
        pool.AddSerializedFile(file.serialized_pb)
    return pool


def _address(host: str, port: int) -> str:
    if ":" in host and not host.startswith("["):  # an IPv6 literal
        host = f"[{host}]"
    return f"{host}:{port}"


def port_in_use(host: str, port: int, *, reuse_port: bool) -> bool:
    """Whether binding ``host:port`` fails because another socket holds it. Asked before gRPC
    binds, because gRPC's C core writes its own lines to stderr when a bind fails."""
    if port == 0:
        return False
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gRPC's listener
        if reuse_port:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            probe.bind((host.strip("[]"), port))
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
    return False


class GrpcServer:
    """Serves the data and control planes over gRPC on ``host:port``.

    ``max_message_bytes`` bounds requests and responses alike (a larger message ends with
    RESOURCE_EXHAUSTED). ``port=0`` picks a free port; ``port`` tells which after ``start``.
    ``reuse_port`` sets SO_REUSEPORT, for several server processes on one port; without it a
    port in use is an error at ``start``.
    """

    def __init__(
        self,
        dataplane: DataPlane,
        control: ControlPlane,
        *,
        host: str,
        port: int,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        reuse_port: bool = False,
        access_log: bool = False,
        access: AccessPolicy | None = None,
        tls: TlsFiles | None = None,
        handshake_timeout_s: float | None = None,
    ) -> None:
        if max_message_bytes <= 0:
            raise ValueError(f"max_message_bytes must be positive, got {max_message_bytes}")
        self._dataplane = dataplane
        self._control = control
        self._address = _address(host, port)
        self._max_message_bytes = max_message_bytes
        self._reuse_port = reuse_port
        self._access_log = access_log
        self._access = access
        self._tls = tls
        self._handshake_timeout_s = handshake_timeout_s
        self._server: grpc.aio.Server | None = None
        self._health: HealthServicer | None = None
        self._port = port

    @property
    def port(self) -> int:
        """The port listened on (the one the OS chose when constructed with 0)."""
        return self._port

    async def start(self) -> None:
        if self._server is not None:
            raise RuntimeError("the gRPC server is already started")
        interceptors: list[grpc.aio.ServerInterceptor] = []
        if self._access_log:
            interceptors.append(AccessLogInterceptor())
        if self._access is not None:  # after the access log, so that refusals are logged
            interceptors.append(AuthInterceptor(self._access))
        server = grpc.aio.server(
            interceptors=interceptors or None,
            options=[
                ("grpc.max_send_message_length", self._max_message_bytes),
                ("grpc.max_receive_message_length", self._max_message_bytes),
                ("grpc.so_reuseport", int(self._reuse_port)),
                *(
                    # A connection that has not finished its handshake by then is closed
                    # (as the REST header timeout): held raw connections cannot pile up.
                    [("grpc.server_handshake_timeout_ms", int(self._handshake_timeout_s * 1000))]
                    if self._handshake_timeout_s is not None
                    else []
                ),
            ],
        )
        self._health = HealthServicer(self._dataplane)
        servicer = InferenceServicer(self._dataplane, self._control)
        pb_grpc.add_GRPCInferenceServiceServicer_to_server(  # type: ignore[no-untyped-call]
            servicer, server
        )
        tfserving.add_services(server, self._dataplane)
        health_pb2_grpc.add_HealthServicer_to_server(  # type: ignore[no-untyped-call]
            self._health, server
        )
        enable_reflection(
            server, (INFERENCE_SERVICE, *tfserving.SERVICES, HEALTH_SERVICE), _reflection_pool()
        )
        host, port = self._address.rsplit(":", 1)
        if port_in_use(host, int(port), reuse_port=self._reuse_port):
            raise PortInUseError(
                f"gRPC cannot listen on {self._address}: the port is in use", setting="grpc_port"
            )
        try:
            if self._tls is None:
                bound = server.add_insecure_port(self._address)
            else:
                cert, key, client_ca = self._tls.read()
                credentials = grpc.ssl_server_credentials(
                    [(key, cert)],
                    root_certificates=client_ca,
                    require_client_auth=client_ca is not None,
                )
                bound = server.add_secure_port(self._address, credentials)
        except RuntimeError as exc:
            raise OSError(f"cannot listen for gRPC on {self._address}: {exc}") from exc
        if bound == 0:  # older grpcio reports a failed bind this way
            raise OSError(f"cannot listen for gRPC on {self._address}")
        self._port = bound
        await server.start()
        self._server = server
        logger.info(
            "gRPC listening on %s (port %d%s)",
            self._address,
            bound,
            ", TLS" if self._tls is not None else "",
        )

    async def stop(self, grace_s: float) -> None:
        """Report NOT_SERVING, refuse new RPCs, and let those in flight finish for up to
        ``grace_s`` seconds before cancelling them."""
        if self._server is None:
            return
        if self._health is not None:
            self._health.enter_graceful_shutdown()
        await self._server.stop(grace_s)
        self._server = None
