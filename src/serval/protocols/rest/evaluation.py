"""``GET /v2/models/{model}/evaluation``: continuous evaluation of a monitored model, computed
when asked (docs/evaluation.md#reading-it-back): per version the rows logged and labelled, the
quality metric, drift per feature and of the prediction; the model's alerts and triggers."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from serval.evaluation.service import EvaluationReader
from serval.protocols.rest.v2 import json_response

EVALUATION_PATH = "/v2/models/{model}/evaluation"


class EvaluationRoute:
    def __init__(self, reader: EvaluationReader) -> None:
        self._reader = reader

    def routes(self) -> list[Route]:
        return [Route(EVALUATION_PATH, self.evaluation, methods=["GET"])]

    async def evaluation(self, request: Request) -> Response:
        return json_response(await self._reader.evaluation(request.path_params["model"]))
