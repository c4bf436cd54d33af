"""The semantic-convention attributes of server spans, from request records: statuses as the
adapters answer them, the error rule of the conventions, and the server's address."""

from __future__ import annotations

import asyncio
import socket

import grpc
import pytest

from serval.core.errors import (
    ClientGoneError,
    ErrorCode,
    InvalidInputError,
    ModelNotFoundError,
    ServalError,
)
from serval.core.records import RequestRecord
from serval.observability.span_attributes import (
    GRPC_STATUS,
    HTTP_STATUS,
    ServerAddress,
    span_facts,
)
from serval.protocols.grpc.errors import STATUS_FOR_CODE
from serval.protocols.rest.errors import HTTP_STATUS as REST_HTTP_STATUS

SERVER = ServerAddress("0.0.0.0", 8080, 8081, "https")


def rest(error: BaseException | None = None, host: str | None = None) -> RequestRecord:
    record = RequestRecord("rest_v2", "POST /v2/models/{model}/infer", "m", 1)
    record.headers = {"host": host} if host is not None else {}
    record.error = error
    return record


def rpc(error: BaseException | None = None) -> RequestRecord:
    record = RequestRecord("grpc", "inference.GRPCInferenceService/ModelInfer", "m", 1)
    record.error = error
    return record


def test_the_status_tables_are_the_adapters() -> None:
    assert HTTP_STATUS == REST_HTTP_STATUS
    assert {code: status.value[0] for code, status in STATUS_FOR_CODE.items()} == GRPC_STATUS
    assert set(HTTP_STATUS) == set(ErrorCode)


def test_a_server_on_every_address_is_named_by_its_host_name() -> None:
    assert ServerAddress.listening("0.0.0.0", 1, 2, tls=False).host == socket.gethostname()
    assert ServerAddress.listening("10.0.0.7", 1, 2, tls=True) == ServerAddress(
        "10.0.0.7", 1, 2, "https"
    )


def test_http_span_names_route_status_and_the_host_the_client_asked() -> None:
    facts = span_facts(rest(host="models.example.com:9000"), SERVER)
    assert facts.attributes == {
        "http.request.method": "POST",
        "http.route": "/v2/models/{model}/infer",
        "http.response.status_code": 200,
        "url.scheme": "https",
        "server.address": "models.example.com",
        "server.port": 9000,
    }
    assert not facts.server_error


@pytest.mark.parametrize(
    ("host", "address", "port"),
    [
        ("[::1]:8443", "::1", 8443),
        ("models.example.com", "models.example.com", 8080),  # no port: the one listened on
        (None, "0.0.0.0", 8080),
    ],
)
def test_http_server_address(host: str | None, address: str, port: int) -> None:
    attributes = span_facts(rest(host=host), SERVER).attributes
    assert (attributes["server.address"], attributes["server.port"]) == (address, port)


def test_a_client_mistake_is_not_a_server_error_but_a_failure_is() -> None:
    refused = span_facts(rest(InvalidInputError("bad shape")), SERVER)
    assert refused.attributes["http.response.status_code"] == 400
    assert refused.attributes["error.type"] == "InvalidInputError"
    assert not refused.server_error
    unknown = span_facts(rest(ModelNotFoundError("no model m")), SERVER)
    assert unknown.attributes["http.response.status_code"] == 404
    crashed = span_facts(rest(RuntimeError("boom")), SERVER)
    assert crashed.attributes["http.response.status_code"] == 500
    assert crashed.attributes["error.type"] == "RuntimeError"
    assert crashed.server_error


def test_a_client_that_left_got_no_http_status() -> None:
    for error in (ClientGoneError("gone"), asyncio.CancelledError()):
        facts = span_facts(rest(error), SERVER)
        assert "http.response.status_code" not in facts.attributes
        assert not facts.server_error


def test_rpc_span_names_service_method_and_grpc_status() -> None:
    facts = span_facts(rpc(), SERVER)
    assert facts.attributes == {
        "rpc.system": "grpc",
        "rpc.service": "inference.GRPCInferenceService",
        "rpc.method": "ModelInfer",
        "rpc.grpc.status_code": 0,
        "server.address": "0.0.0.0",
        "server.port": 8081,
    }


@pytest.mark.parametrize(
    ("error", "status", "server_error"),
    [
        (InvalidInputError("bad"), grpc.StatusCode.INVALID_ARGUMENT, False),
        (ModelNotFoundError("none"), grpc.StatusCode.NOT_FOUND, False),
        (ClientGoneError("gone"), grpc.StatusCode.CANCELLED, False),
        (ServalError("broken"), grpc.StatusCode.INTERNAL, True),
        (ValueError("unexpected"), grpc.StatusCode.INTERNAL, True),
    ],
)
def test_rpc_status_and_error_rule(
    error: BaseException, status: grpc.StatusCode, server_error: bool
) -> None:
    facts = span_facts(rpc(error), SERVER)
    assert facts.attributes["rpc.grpc.status_code"] == status.value[0]
    assert facts.server_error is server_error
