"""Traffic policy routes (docs/rollout.md): ``GET|PUT /v2/models/{model}/traffic`` and
``POST /v2/models/{model}/traffic/rollback``. Changing traffic needs the ``admin`` role when
tokens are on (``auth.required_role``), reading it ``read``."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from serval.core.control import ControlPlane
from serval.core.errors import InvalidInputError
from serval.protocols.rest.body import parse_json_object, read_body
from serval.protocols.rest.v2 import json_response

_BODY_LIMIT = 1 << 20  # a policy is a few hundred bytes


class TrafficRoutes:
    def __init__(self, control: ControlPlane) -> None:
        self._control = control

    def routes(self) -> list[Route]:
        path = "/v2/models/{model}/traffic"
        return [
            Route(path, self.get, methods=["GET"]),
            Route(path, self.put, methods=["PUT"]),
            Route(f"{path}/rollback", self.rollback, methods=["POST"]),
        ]

    async def get(self, request: Request) -> Response:
        return json_response(self._control.traffic(request.path_params["model"]))

    async def put(self, request: Request) -> Response:
        body = await read_body(request, _BODY_LIMIT)
        if not body.strip():
            raise InvalidInputError("the body must be a JSON object: the traffic section")
        doc = parse_json_object(body)
        return json_response(self._control.set_traffic(request.path_params["model"], doc))

    async def rollback(self, request: Request) -> Response:
        body = await read_body(request, _BODY_LIMIT)
        doc = parse_json_object(body) if body.strip() else {}
        unknown = sorted(set(doc) - {"to"})
        if unknown:
            raise InvalidInputError(f'{unknown[0]}: unknown key (the body is {{"to": "1"}})')
        to = doc.get("to")
        return json_response(self._control.rollback_traffic(request.path_params["model"], to))
