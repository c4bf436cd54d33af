"""gRPC server reflection, ``grpc.reflection.v1`` and ``grpc.reflection.v1alpha``, on one server.

grpcio-reflection serves only v1alpha, while current clients (grpcurl, Postman, grpcui, gRPC's
own CLI) ask for v1 first. The two versions' messages are the same field for field (a test
checks it), so one servicer answers both: the v1 method reads and writes v1alpha messages,
whose bytes are v1's. ``proto/grpc_reflection_v1.proto`` gives reflection clients v1's
description.
"""

from __future__ import annotations

from collections.abc import Iterable

import grpc
import grpc.aio
from google.protobuf import descriptor_pool
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_reflection.v1alpha._async import ReflectionServicer

from serval.protocols.grpc.generated import grpc_reflection_v1_pb2 as reflection_v1_pb2

V1ALPHA_SERVICE: str = reflection_pb2.DESCRIPTOR.services_by_name["ServerReflection"].full_name
V1_SERVICE: str = reflection_v1_pb2.DESCRIPTOR.services_by_name["ServerReflection"].full_name
_METHOD = "ServerReflectionInfo"


def enable_reflection(
    server: grpc.aio.Server, services: Iterable[str], pool: descriptor_pool.DescriptorPool
) -> None:
    """Serve reflection over both versions for ``services`` (the reflection services are
    added to them), describing them from ``pool``, which must hold both reflection files."""
    servicer = ReflectionServicer((*services, V1_SERVICE, V1ALPHA_SERVICE), pool=pool)
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(servicer, server)
    v1_handler = grpc.stream_stream_rpc_method_handler(
        servicer.ServerReflectionInfo,
        request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
        response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(V1_SERVICE, {_METHOD: v1_handler}),)
    )
