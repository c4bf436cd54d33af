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

OPENAPI_PATH = "/openapi.json"
METRICS_PATH = "/metrics"


def openapi_document(version: str, *, metrics: bool = True) -> dict[str, Any]:
    """The description for a server of ``version``; without ``/metrics`` unless ``metrics``."""
    text = resources.files(__package__).joinpath("openapi.yaml").read_text(encoding="utf-8")
    # libyaml's loader where present: the pure-Python one takes a quarter second of start-up.
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    document: dict[str, Any] = yaml.load(text, Loader=loader)
    document["info"]["version"] = version
    if not metrics:
        del document["paths"][METRICS_PATH]
    return document


def openapi_endpoint(document: dict[str, Any]) -> Callable[[Request], Awaitable[Response]]:
    body = orjson.dumps(document)  # rendered once: the description never changes while serving

    async def openapi(request: Request) -> Response:
        return Response(body, media_type="application/json")

    return openapi
