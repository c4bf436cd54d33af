"""The REST app's layers turn whatever escapes a route into a JSON answer and end the request
normally, so that uvicorn neither answers plain text nor resets the connection: errors inside
Starlette (``UnexpectedErrors``), a shutdown's cancellation outside (``RequestIdMiddleware``),
composed as ``build_rest_app`` composes them."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from serval.protocols.rest.errors import UnexpectedErrors, unexpected_error
from serval.protocols.rest.middleware import RequestIdMiddleware


async def _raise(request: Request) -> Response:
    kind = request.path_params["kind"]
    if kind == "runtime":
        raise RuntimeError("boom")
    if kind == "exit":
        raise SystemExit(3)
    raise asyncio.CancelledError


async def _handler(request: Request, exc: Exception) -> Response:
    return unexpected_error(exc)


APP = RequestIdMiddleware(
    Starlette(
        routes=[Route("/{kind}", _raise)],
        exception_handlers={Exception: _handler},
        middleware=[Middleware(UnexpectedErrors)],
    )
)


@pytest.mark.parametrize(
    ("kind", "status", "fragment"),
    [("runtime", 500, "RuntimeError: boom"), ("exit", 500, "SystemExit"), ("cut", 503, "shut")],
)
def test_escapes_become_json(kind: str, status: int, fragment: str) -> None:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "GET",
        "path": f"/{kind}",
        "raw_path": f"/{kind}".encode(),
        "query_string": b"",
        "headers": [],
        "root_path": "",
        "scheme": "http",
        "server": ("127.0.0.1", 8080),
    }
    asyncio.run(APP(scope, receive, send))  # returns: nothing escapes to the server
    assert sent[0]["status"] == status
    assert (b"content-type", b"application/json") in sent[0]["headers"]
    assert fragment in orjson.loads(sent[1]["body"])["error"]
