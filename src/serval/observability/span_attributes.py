"""The OpenTelemetry semantic-convention attributes of a request's server span.

A record's ``operation`` is the route (``POST /v2/models/{model}/infer``) or the RPC
(``inference.GRPCInferenceService/ModelInfer``): the first makes an HTTP server span
(``http.request.method``, ``http.route``, ``http.response.status_code``, ``url.scheme``),
the second an RPC server span (``rpc.system``, ``rpc.service``, ``rpc.method``,
``rpc.grpc.status_code``); both name the server (``server.address``, ``server.port``).
The statuses are the ones the adapters answer with (``protocols.rest.errors.HTTP_STATUS``,
``protocols.grpc.errors.STATUS_FOR_CODE``; a test holds them equal: observability sits below
the adapters and cannot import them). As the conventions say, a server span is an error only
when the server failed (5xx, or a gRPC status such as INTERNAL or UNAVAILABLE), not when the
client's request was refused; ``error.type`` names what failed either way.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from serval.core.errors import ClientGoneError, ErrorCode, ServalError
from serval.core.records import RequestRecord

HTTP_STATUS: dict[ErrorCode, int] = {
    ErrorCode.INVALID_ARGUMENT: 400,
    ErrorCode.FAILED_PRECONDITION: 400,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.PAYLOAD_TOO_LARGE: 413,
    ErrorCode.RESOURCE_EXHAUSTED: 429,
    ErrorCode.INTERNAL: 500,
    ErrorCode.UNIMPLEMENTED: 501,
    ErrorCode.UNAVAILABLE: 503,
    ErrorCode.DEADLINE_EXCEEDED: 504,
    ErrorCode.UNAUTHENTICATED: 401,
    ErrorCode.PERMISSION_DENIED: 403,
}
# gRPC's numeric status codes (grpc.StatusCode values), which rpc.grpc.status_code holds.
GRPC_OK, GRPC_CANCELLED, GRPC_INTERNAL = 0, 1, 13
GRPC_STATUS: dict[ErrorCode, int] = {
    ErrorCode.INVALID_ARGUMENT: 3,
    ErrorCode.NOT_FOUND: 5,
    ErrorCode.PAYLOAD_TOO_LARGE: 8,  # RESOURCE_EXHAUSTED
    ErrorCode.RESOURCE_EXHAUSTED: 8,
    ErrorCode.UNAVAILABLE: 14,
    ErrorCode.DEADLINE_EXCEEDED: 4,
    ErrorCode.FAILED_PRECONDITION: 9,
    ErrorCode.UNIMPLEMENTED: 12,
    ErrorCode.INTERNAL: GRPC_INTERNAL,
    ErrorCode.UNAUTHENTICATED: 16,
    ErrorCode.PERMISSION_DENIED: 7,
}
# The gRPC statuses the conventions count as a server span's error: UNKNOWN,
# DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS.
_GRPC_SERVER_ERRORS = frozenset({2, 4, 12, 13, 14, 15})
_WILDCARDS = frozenset({"", "0.0.0.0", "::", "[::]"})


@dataclass(frozen=True)
class ServerAddress:
    """Where the server listens: ``server.address`` / ``server.port`` when a request does
    not say (an HTTP request's ``Host`` header does); a port of 0 is not reported."""

    host: str = "127.0.0.1"
    http_port: int = 0
    grpc_port: int = 0
    http_scheme: str = "http"

    @classmethod
    def listening(cls, host: str, http_port: int, grpc_port: int, tls: bool) -> ServerAddress:
        """The server as it listens; on every address (``0.0.0.0``, a pod's usual host), it is
        named by the machine's host name, which says more than a wildcard."""
        if host in _WILDCARDS:
            host = socket.gethostname()
        return cls(host, http_port, grpc_port, "https" if tls else "http")


@dataclass(frozen=True)
class SpanFacts:
    """A server span's convention attributes, and whether the server failed the request."""

    attributes: dict[str, Any]
    server_error: bool


def span_facts(record: RequestRecord, server: ServerAddress) -> SpanFacts:
    """The attributes of ``record``'s server span under the conventions of its protocol."""
    method, space, route = record.operation.partition(" ")
    error = record.error
    attributes: dict[str, Any] = {}
    if error is not None:
        attributes["error.type"] = type(error).__name__
    if space:  # "METHOD /route": HTTP
        attributes["http.request.method"] = method
        attributes["http.route"] = route
        attributes["url.scheme"] = server.http_scheme
        host, port = _host_header(record.headers, server.host, server.http_port)
        _address(attributes, host, port)
        status = _http_status(error)
        if status is not None:
            attributes["http.response.status_code"] = status
        return SpanFacts(attributes, status is not None and status >= 500)
    service, _, rpc_method = record.operation.rpartition("/")
    attributes["rpc.system"] = "grpc"
    attributes["rpc.service"] = service
    attributes["rpc.method"] = rpc_method
    _address(attributes, server.host, server.grpc_port)
    code = _grpc_status(error)
    attributes["rpc.grpc.status_code"] = code
    return SpanFacts(attributes, code in _GRPC_SERVER_ERRORS)


def _http_status(error: BaseException | None) -> int | None:
    """The status the REST adapter answered with; None when it answered none (the client
    left first, or the server went away)."""
    if error is None:
        return 200
    if isinstance(error, ClientGoneError | asyncio.CancelledError):
        return None
    if isinstance(error, ServalError):
        return HTTP_STATUS.get(error.code, 500)
    return 500


def _grpc_status(error: BaseException | None) -> int:
    if error is None:
        return GRPC_OK
    if isinstance(error, ClientGoneError | asyncio.CancelledError):
        return GRPC_CANCELLED
    if isinstance(error, ServalError):
        return GRPC_STATUS.get(error.code, GRPC_INTERNAL)
    return GRPC_INTERNAL


def _host_header(headers: Mapping[str, str] | None, host: str, port: int) -> tuple[str, int]:
    """The host and port the client asked for (``Host``), else where the server listens."""
    value = headers.get("host") if headers is not None else None
    if not value:
        return host, port
    if value.startswith("["):  # [::1]:8080
        bracketed, _, rest = value[1:].partition("]")
        return bracketed, int(rest[1:]) if rest[1:].isdigit() else port
    name, colon, number = value.rpartition(":")
    if colon and number.isdigit():
        return name, int(number)
    return value, port


def _address(attributes: dict[str, Any], host: str, port: int) -> None:
    attributes["server.address"] = host
    if port:
        attributes["server.port"] = port
