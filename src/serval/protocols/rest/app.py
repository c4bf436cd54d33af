"""The ASGI application: V2 and V1 routes, and errors as ``{"error": "..."}``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp

from serval.core.control import ControlPlane
from serval.core.dataplane import DataPlane
from serval.core.errors import ServalError
from serval.evaluation.service import EvaluationReader
from serval.protocols.rest.errors import (
    UnexpectedErrors,
    error_response,
    json_error,
)
from serval.protocols.rest.evaluation import EvaluationRoute
from serval.protocols.rest.middleware import RequestIdMiddleware
from serval.protocols.rest.openapi import (
    METRICS_PATH,
    OPENAPI_PATH,
    openapi_document,
    openapi_endpoint,
)
from serval.protocols.rest.traffic import TrafficRoutes
from serval.protocols.rest.v1 import V1Routes
from serval.protocols.rest.v2 import V2Routes
from serval.protocols.rest.v2_infer import InferFastPath, V2InferEndpoint


async def _serval_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ServalError)
    return error_response(exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        return json_error(404, f"no such endpoint: {request.method} {request.url.path}")
    if exc.status_code == 405:
        return json_error(405, f"method {request.method} not allowed on {request.url.path}")
    return json_error(exc.status_code, str(exc.detail))


def build_rest_app(
    dataplane: DataPlane,
    control: ControlPlane,
    *,
    max_request_bytes: int,
    metrics: Callable[[], tuple[bytes, str]] | None = None,
    access_log: bool = False,
    openapi_version: str | None = None,
    bearer_auth: bool = False,
    open_health: bool = True,
    evaluation: EvaluationReader | None = None,
) -> ASGIApp:
    """``metrics`` renders ``GET /metrics`` (body, content type); None leaves it out.
    ``openapi_version``: serve ``GET /openapi.json`` describing a server of that version; None
    leaves it out; ``bearer_auth`` and ``open_health`` describe the token check the
    composition root puts in front of the app; ``evaluation`` answers
    ``GET /v2/models/{m}/evaluation`` (None leaves it out)."""
    infer = V2InferEndpoint(dataplane, max_request_bytes, access_log=access_log)
    v2 = V2Routes(dataplane, control, max_request_bytes, infer)
    v1 = V1Routes(dataplane, max_request_bytes)
    routes = [*v2.routes(), *TrafficRoutes(control).routes(), *v1.routes()]
    if evaluation is not None:
        routes.extend(EvaluationRoute(evaluation).routes())
    if metrics is not None:
        routes.append(Route(METRICS_PATH, _metrics_endpoint(metrics), methods=["GET"]))
    if openapi_version is not None:
        document = openapi_document(
            openapi_version,
            metrics=metrics is not None,
            bearer_auth=bearer_auth,
            open_health=open_health,
        )
        routes.append(Route(OPENAPI_PATH, openapi_endpoint(document), methods=["GET"]))
    app = Starlette(
        routes=routes,
        exception_handlers={
            ServalError: _serval_error,
            HTTPException: _http_error,
        },
        middleware=[Middleware(UnexpectedErrors)],
    )
    return InferFastPath(infer, RequestIdMiddleware(app, access_log=access_log))


def _metrics_endpoint(
    render: Callable[[], tuple[bytes, str]],
) -> Callable[[Request], Awaitable[Response]]:
    async def metrics(request: Request) -> Response:
        body, content_type = render()  # on the loop: the accumulators are loop-confined
        return Response(body, headers={"Content-Type": content_type})

    return metrics
