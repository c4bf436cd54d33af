"""``GET /openapi.json``: the REST API described as OpenAPI 3.1.

The description is a data file beside this module (``openapi.yaml``, shipped as package data),
so that it reads as the API rather than as code; this module fills in what depends on the
running server (its version, whether ``/metrics`` exists) and renders it once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any

import orjson
import yaml
from starlette.requests import Request
from starlette.responses import Response

from serval.protocols.rest.connection_guard import HEALTH_PATHS

OPENAPI_PATH = "/openapi.json"
METRICS_PATH = "/metrics"
_METHODS = frozenset({"get", "put", "post", "delete", "patch", "head", "options"})


def openapi_document(
    version: str, *, metrics: bool = True, bearer_auth: bool = False, open_health: bool = True
) -> dict[str, Any]:
    """The description for a server of ``version``; without ``/metrics`` unless ``metrics``.
    With ``bearer_auth`` (``--auth-tokens``), every operation needs a bearer token (health
    probes too unless ``open_health``) and may answer 401 and 403."""
    text = resources.files(__package__).joinpath("openapi.yaml").read_text(encoding="utf-8")
    # libyaml's loader where present: the pure-Python one takes a quarter second of start-up.
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    document: dict[str, Any] = yaml.load(text, Loader=loader)
    document["info"]["version"] = version
    if not metrics:
        del document["paths"][METRICS_PATH]
    if bearer_auth:
        _require_bearer_tokens(document, open_health=open_health)
    return document


def _require_bearer_tokens(document: dict[str, Any], *, open_health: bool) -> None:
    components = document["components"]
    components.setdefault("securitySchemes", {})["bearerAuth"] = {
        "type": "http",
        "scheme": "bearer",
        "description": "A token of the --auth-tokens file; its role (read, infer, admin) "
        "decides what it may call (docs/security.md).",
    }
    error_body = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    components["responses"]["Unauthenticated"] = {
        "description": "No bearer token, or one the server does not know.",
        "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}},
        "content": error_body,
    }
    components["responses"]["PermissionDenied"] = {
        "description": "The token's role is too low; the message names the role needed.",
        "content": error_body,
    }
    document["security"] = [{"bearerAuth": []}]
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method not in _METHODS:
                continue  # path-level parameters
            if open_health and path in HEALTH_PATHS:
                operation["security"] = [{}]
                continue
            responses = operation.setdefault("responses", {})
            responses.setdefault("401", {"$ref": "#/components/responses/Unauthenticated"})
            responses.setdefault("403", {"$ref": "#/components/responses/PermissionDenied"})


def openapi_endpoint(document: dict[str, Any]) -> Callable[[Request], Awaitable[Response]]:
    body = orjson.dumps(document)  # rendered once: the description never changes while serving

    async def openapi(request: Request) -> Response:
        return Response(body, media_type="application/json")

    return openapi
