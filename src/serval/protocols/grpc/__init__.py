"""The Open Inference Protocol over gRPC (``inference.GRPCInferenceService``), the standard
health service and server reflection. Only ``serval.core`` is imported from serval."""

from serval.protocols.grpc.server import GrpcServer

__all__ = ["GrpcServer"]
