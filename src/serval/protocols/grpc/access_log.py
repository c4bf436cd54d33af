"""The gRPC access log (``--access-log``): one line per unary RPC, with its status code, time
and request id. Installed only when the access log is on, so it costs nothing otherwise."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import grpc.aio

from serval.observability.logging import REQUEST_ID_HEADER, begin_request, log_access


class AccessLogInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None or handler.unary_unary is None:
            return handler  # streaming RPCs (ModelStreamInfer, health Watch) are not logged
        inner = handler.unary_unary
        method: str = details.method
        given = next(
            (v for k, v in details.invocation_metadata or () if k == REQUEST_ID_HEADER), None
        )

        async def logged(request: Any, context: grpc.aio.ServicerContext) -> Any:
            begin_request(given if isinstance(given, str) else None)
            started = time.perf_counter_ns()
            try:
                return await inner(request, context)
            finally:
                code = context.code() or grpc.StatusCode.OK
                milliseconds = (time.perf_counter_ns() - started) / 1e6
                log_access(
                    "%s %s %.2f ms",
                    method,
                    code.name,
                    milliseconds,
                    method=method,
                    status=code.name,
                    duration_ms=round(milliseconds, 3),
                    client=context.peer(),
                )

        return grpc.unary_unary_rpc_method_handler(
            logged,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
