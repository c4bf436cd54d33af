"""The OpenAPI description against the router: every route described, every described path
routed, and ``/openapi.json`` served or left out as configured. tests/e2e/test_openapi.py
checks the responses themselves with schemathesis."""

from __future__ import annotations

import argparse
import asyncio
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from starlette.routing import Route

from serval import __version__
from serval.cli.serve import register, settings_from_args
from serval.protocols.rest.app import build_rest_app
from serval.protocols.rest.evaluation import EvaluationRoute
from serval.protocols.rest.openapi import openapi_document
from serval.protocols.rest.traffic import TrafficRoutes
from serval.protocols.rest.v1 import V1Routes
from serval.protocols.rest.v2 import V2Routes

METHODS = {"get", "post", "put", "delete", "patch"}


def _operations(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if method in METHODS
    }


def _routes() -> list[Route]:
    # The route tables only: building them touches neither the data plane nor the models.
    return [
        *V2Routes(None, None, 1024, None).routes(),  # type: ignore[arg-type]
        *TrafficRoutes(None).routes(),  # type: ignore[arg-type]
        *EvaluationRoute(None).routes(),  # type: ignore[arg-type]
        *V1Routes(None, 1024).routes(),  # type: ignore[arg-type]
    ]


def test_every_v2_route_is_described() -> None:
    described = _operations(openapi_document(__version__))
    for route in _routes():
        if route.path.startswith("/v1/models/{path:path}"):
            continue  # one catch-all route, checked below
        for method in route.methods or ():
            if method != "HEAD":
                assert (method, route.path) in described, (method, route.path)


def test_v1_paths_are_described_with_versions_and_labels() -> None:
    described = _operations(openapi_document(__version__))
    for prefix in ("/v1/models/{model}", "/v1/models/{model}/versions/{version}"):
        assert ("GET", prefix) in described
        assert ("GET", f"{prefix}/metadata") in described
        assert ("POST", f"{prefix}:predict") in described
    label = "/v1/models/{model}/labels/{label}"
    assert {("GET", label), ("GET", f"{label}/metadata"), ("POST", f"{label}:predict")} <= described
    assert ("GET", "/v1/models") in described
    assert {
        ("POST", "/v1/models/{model}:classify"),
        ("POST", "/v1/models/{model}:regress"),
        ("POST", "/v1/models/{model}:explain"),
    } <= described


def test_every_described_v2_path_is_a_route() -> None:
    routed = {(method, route.path) for route in _routes() for method in route.methods or ()}
    for method, path in _operations(openapi_document(__version__)):
        if path.startswith("/v2"):
            assert (method, path) in routed, (method, path)


def test_every_operation_has_a_json_error_response() -> None:
    document = openapi_document(__version__)
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method not in METHODS or path in ("/", "/v2", "/v2/health/live", "/v2/health/ready"):
                continue
            if path in ("/metrics", "/openapi.json", "/v1/models"):
                continue
            statuses = set(operation["responses"])
            assert statuses & {"400", "404"}, (method, path)


def test_metrics_and_version_follow_the_server() -> None:
    assert openapi_document("9.9.9")["info"]["version"] == "9.9.9"
    assert "/metrics" in openapi_document("1", metrics=True)["paths"]
    assert "/metrics" not in openapi_document("1", metrics=False)["paths"]


def _get_openapi(**options: Any) -> httpx.Response:
    # The route tables only: no request reaches the data plane (the inference endpoint keeps
    # its sticky-header mapping).
    dataplane = SimpleNamespace(sticky_headers={})
    app = build_rest_app(dataplane, None, max_request_bytes=1024, **options)  # type: ignore[arg-type]

    async def get() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://serval") as http:
            return await http.get("/openapi.json")

    return asyncio.run(get())


def test_served_when_asked() -> None:
    response = _get_openapi(openapi_version="1.2.3")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    document = response.json()
    assert document["openapi"] == "3.1.0"
    assert document["info"]["version"] == "1.2.3"
    assert "/metrics" not in document["paths"]  # this app has no metrics endpoint


def test_left_out_when_off() -> None:
    response = _get_openapi(openapi_version=None)
    assert response.status_code == 404
    assert response.json() == {"error": "no such endpoint: GET /openapi.json"}


@pytest.mark.parametrize(("flag", "expected"), [(None, True), ("false", False), ("true", True)])
def test_openapi_flag(flag: str | None, expected: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SERVAL_OPENAPI", raising=False)
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"), "serve")
    args = parser.parse_args(["serve", ".", *(["--openapi", flag] if flag else [])])
    assert settings_from_args(args).openapi is expected


def test_openapi_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SERVAL_OPENAPI", "false")
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"), "serve")
    assert settings_from_args(parser.parse_args(["serve", "."])).openapi is False


def test_a_bad_flag_value_is_refused() -> None:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"), "serve")
    with pytest.raises(ValueError, match="--openapi"):
        settings_from_args(parser.parse_args(["serve", ".", "--openapi", "maybe"]))


def test_with_tokens_every_operation_needs_one_and_may_answer_401_and_403() -> None:
    document = openapi_document("1.0", bearer_auth=True, open_health=True)
    assert document["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    assert document["security"] == [{"bearerAuth": []}]
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method not in METHODS:
                continue
            if path.startswith("/v2/health/") or path == "/":  # "/": KServe V1's liveness
                assert operation["security"] == [{}], path  # probes need no token
                continue
            assert "401" in operation["responses"], path
            assert "403" in operation["responses"], path


def test_closed_health_probes_need_a_token_too() -> None:
    document = openapi_document("1.0", bearer_auth=True, open_health=False)
    live = document["paths"]["/v2/health/live"]["get"]
    assert "security" not in live
    assert "401" in live["responses"]
