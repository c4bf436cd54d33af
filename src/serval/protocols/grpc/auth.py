"""Bearer-token checks for every RPC (``--auth-tokens``): a server interceptor reading the
``authorization`` metadata. Installed only when tokens are configured."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import grpc.aio

from serval.core.errors import ServalError
from serval.protocols.grpc.errors import abort
from serval.security.access import AccessPolicy, hide_details
from serval.security.tokens import Role

_INFERENCE = "/inference.GRPCInferenceService/"
_HEALTH = "/grpc.health.v1.Health/"
_TF_PREDICTION = "/tensorflow.serving.PredictionService/"
_TF_MODEL = "/tensorflow.serving.ModelService/"
# The role each RPC needs; None: a health probe (``--auth-open-health`` may leave it open).
# An RPC not listed (server reflection) needs ``read``.
ROLES: dict[str, Role | None] = {
    f"{_INFERENCE}ServerLive": None,
    f"{_INFERENCE}ServerReady": None,
    f"{_HEALTH}Check": None,
    f"{_HEALTH}Watch": None,
    f"{_HEALTH}List": Role.READ,  # names every model: not a probe
    f"{_INFERENCE}ModelReady": Role.READ,
    f"{_INFERENCE}ServerMetadata": Role.READ,
    f"{_INFERENCE}ModelMetadata": Role.READ,
    f"{_INFERENCE}ModelConfig": Role.READ,
    f"{_INFERENCE}ModelStatistics": Role.READ,
    f"{_INFERENCE}ModelInfer": Role.INFER,
    f"{_INFERENCE}ModelStreamInfer": Role.INFER,
    f"{_INFERENCE}RepositoryIndex": Role.ADMIN,
    f"{_INFERENCE}RepositoryModelLoad": Role.ADMIN,
    f"{_INFERENCE}RepositoryModelUnload": Role.ADMIN,
    f"{_TF_PREDICTION}Predict": Role.INFER,
    f"{_TF_PREDICTION}GetModelMetadata": Role.READ,
    f"{_TF_MODEL}GetModelStatus": Role.READ,
}
_AUTHORIZATION = "authorization"


class AuthInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    def __init__(self, policy: AccessPolicy) -> None:
        self._policy = policy

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None:
            return handler
        needed = ROLES.get(details.method, Role.READ)
        policy = self._policy
        if needed is None and policy.open_health:
            return _wrap_unary(handler, None) if handler.unary_unary is not None else handler
        credential = _credential(details.invocation_metadata)
        if handler.unary_unary is not None:
            # Checked inside the RPC's own task, where the role's error visibility must hold.
            return _wrap_unary(handler, lambda: policy.authorize(credential, needed or Role.READ))
        try:
            policy.authorize(credential, needed or Role.READ)
        except ServalError as exc:
            return _refusal(handler, exc)
        return handler


def _credential(metadata: Any) -> bytes | None:
    for key, value in metadata or ():
        if key == _AUTHORIZATION:
            return value.encode("latin-1") if isinstance(value, str) else bytes(value)
    return None


def _wrap_unary(
    handler: grpc.RpcMethodHandler, check: Callable[[], object] | None
) -> grpc.RpcMethodHandler:
    inner = handler.unary_unary

    async def checked(request: Any, context: grpc.aio.ServicerContext) -> Any:
        if check is None:
            hide_details()  # an open health probe carries no token
        else:
            try:
                check()
            except ServalError as exc:
                await abort(context, exc)
        return await inner(request, context)

    return grpc.unary_unary_rpc_method_handler(
        checked,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


def _refusal(handler: grpc.RpcMethodHandler, error: ServalError) -> grpc.RpcMethodHandler:
    """A handler of ``handler``'s kind that ends the RPC with ``error``."""

    async def refuse(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await abort(context, error)

    async def refuse_stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        await abort(context, error)
        yield  # pragma: no cover - abort raises

    serializers = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(refuse_stream, **serializers)
    if handler.stream_unary is not None:
        return grpc.stream_unary_rpc_method_handler(refuse, **serializers)
    return grpc.stream_stream_rpc_method_handler(refuse_stream, **serializers)
