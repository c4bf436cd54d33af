"""Open Inference Protocol (KServe V2) REST routes, with Triton's repository, statistics and
model configuration extensions."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from serval.core.control import ControlPlane, IndexEntry
from serval.core.dataplane import DataPlane, Readiness
from serval.core.errors import InvalidInputError
from serval.core.statistics import Duration, VersionStatistics
from serval.core.types import ModelMetadata, TensorSpec
from serval.protocols.oip.repository import index_state
from serval.protocols.oip.triton_config import triton_model_config
from serval.protocols.oip.triton_load import translate_load_parameters
from serval.protocols.rest.body import parse_json_object, read_body
from serval.protocols.rest.feedback import FeedbackRoute
from serval.protocols.rest.v2_infer import V2InferEndpoint
from serval.security.access import public_message

EXTENSIONS = (
    "binary_tensor_data",
    "classification",
    "model_repository",
    "statistics",
    "model_configuration",
)


def json_response(content: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(content), status_code=status, media_type="application/json")


class V2Routes:
    def __init__(
        self,
        dataplane: DataPlane,
        control: ControlPlane,
        max_request_bytes: int,
        infer: V2InferEndpoint,
    ) -> None:
        self._dataplane = dataplane
        self._control = control
        self._limit = max_request_bytes
        self._infer = infer
        self._feedback = FeedbackRoute(dataplane, max_request_bytes)

    def routes(self) -> list[Route]:
        model = "/v2/models/{model}"
        version = "/v2/models/{model}/versions/{version}"
        return [
            Route("/v2/health/live", self.live, methods=["GET"]),
            Route("/v2/health/ready", self.ready, methods=["GET"]),
            Route("/v2", self.server_metadata, methods=["GET"]),
            Route("/v2/models/stats", self.statistics, methods=["GET"]),
            Route("/v2/repository/index", self.repository_index, methods=["POST"]),
            Route("/v2/repository/models/{model}/load", self.load, methods=["POST"]),
            Route("/v2/repository/models/{model}/unload", self.unload, methods=["POST"]),
            *self._feedback.routes(),
            *[
                route
                for prefix in (model, version)
                for route in (
                    Route(prefix, self.model_metadata, methods=["GET"]),
                    Route(f"{prefix}/ready", self.model_ready, methods=["GET"]),
                    Route(f"{prefix}/config", self.model_config, methods=["GET"]),
                    Route(f"{prefix}/stats", self.statistics, methods=["GET"]),
                    Route(f"{prefix}/infer", self._infer, methods=["POST"]),
                )
            ],
        ]

    async def live(self, request: Request) -> Response:
        live = self._dataplane.live()
        return json_response({"live": live}, 200 if live else 503)

    async def ready(self, request: Request) -> Response:
        readiness = self._dataplane.ready()
        if readiness.ready:
            if readiness.degraded:
                return json_response({"ready": True, "degraded": _degraded(readiness)})
            return json_response({"ready": True})
        # Draining is no secret: a load balancer or an operator may read why.
        summary = "not ready: draining" if readiness.draining else "not ready"
        body: dict[str, object] = {
            "ready": False,
            "error": public_message(f"not ready: {readiness.reason}", summary),
        }
        if readiness.draining:
            body["draining"] = True
        if readiness.degraded:
            body["degraded"] = _degraded(readiness)
        return Response(
            orjson.dumps(body),
            status_code=503,
            media_type="application/json",
            headers={"Retry-After": "1"},
        )

    async def server_metadata(self, request: Request) -> Response:
        meta = self._dataplane.server_metadata()
        return json_response(
            {"name": meta.name, "version": meta.version, "extensions": list(meta.extensions)}
        )

    async def model_metadata(self, request: Request) -> Response:
        params = request.path_params
        metadata = self._dataplane.model_metadata(params["model"], params.get("version"))
        return json_response(_metadata_json(metadata))

    async def model_ready(self, request: Request) -> Response:
        name = request.path_params["model"]
        version = request.path_params.get("version")
        ready = self._dataplane.model_ready(name, version)
        if ready:
            return json_response({"name": name, "ready": True})
        reason = self._dataplane.why_not_ready(name, version)
        summary = f"model {name!r} is not ready"
        # The reason may name repository paths: shown to callers allowed to see details.
        error = public_message(f"{summary}: {reason}", summary) if reason else summary
        return Response(
            orjson.dumps({"name": name, "ready": False, "error": error}),
            status_code=503,
            media_type="application/json",
            headers={"Retry-After": "1"},
        )

    async def model_config(self, request: Request) -> Response:
        params = request.path_params
        view = self._dataplane.model_config(params["model"], params.get("version"))
        return json_response(triton_model_config(view))

    async def statistics(self, request: Request) -> Response:
        params = request.path_params
        stats = self._dataplane.statistics(params.get("model"), params.get("version"))
        return json_response({"model_stats": [_statistics_json(s) for s in stats]})

    async def repository_index(self, request: Request) -> Response:
        doc = await self._optional_json(request)
        ready_only = doc.get("ready", False)
        if not isinstance(ready_only, bool):
            raise InvalidInputError("'ready' must be a boolean")
        entries = await self._control.index(ready_only)
        return json_response([_index_json(entry) for entry in entries])

    async def load(self, request: Request) -> Response:
        doc = await self._optional_json(request)
        parameters = doc.get("parameters") or {}
        if not isinstance(parameters, dict):
            raise InvalidInputError("'parameters' must be an object")
        name = request.path_params["model"]
        await self._control.load(name, translate_load_parameters(name, parameters))
        return json_response({})

    async def unload(self, request: Request) -> Response:
        await self._optional_json(request)
        await self._control.unload(request.path_params["model"])
        return json_response({})

    async def _optional_json(self, request: Request) -> dict[str, Any]:
        body = await read_body(request, self._limit)
        return parse_json_object(body) if body.strip() else {}


def _tensor_json(spec: TensorSpec) -> dict[str, Any]:
    return {"name": spec.name, "datatype": spec.datatype.value, "shape": list(spec.shape)}


def _metadata_json(metadata: ModelMetadata) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "name": metadata.name,
        "versions": list(metadata.versions),
        "platform": metadata.platform,
        "inputs": [_tensor_json(spec) for spec in metadata.inputs],
        "outputs": [_tensor_json(spec) for spec in metadata.outputs],
    }
    # Extensions to the protocol's fields (as MLServer's `parameters`), only when present.
    if metadata.signatures:
        doc["signatures"] = list(metadata.signatures)
    if metadata.parameters:
        doc["parameters"] = dict(metadata.parameters)
    return doc


def _duration(duration: Duration) -> dict[str, int]:
    return {"count": duration.count, "ns": duration.ns}


def _statistics_json(stats: VersionStatistics) -> dict[str, Any]:
    return {
        "name": stats.name,
        "version": str(stats.version),
        "last_inference": stats.last_inference_ms,
        "inference_count": stats.inference_count,
        "execution_count": stats.execution_count,
        "inference_stats": {
            "success": _duration(stats.success),
            "fail": _duration(stats.fail),
            "queue": _duration(stats.queue),
            "compute_input": _duration(stats.compute_input),
            "compute_infer": _duration(stats.compute_infer),
            "compute_output": _duration(stats.compute_output),
            "cache_hit": _duration(stats.cache_hit),
            "cache_miss": _duration(stats.cache_miss),
        },
        "batch_stats": [
            {
                "batch_size": size,
                "compute_input": _duration(batch.compute_input),
                "compute_infer": _duration(batch.compute_infer),
                "compute_output": _duration(batch.compute_output),
            }
            for size, batch in sorted(stats.batches.items())
        ],
    }


def _index_json(entry: IndexEntry) -> dict[str, Any]:
    row: dict[str, Any] = {"name": entry.name}
    if entry.version is not None:
        row["version"] = str(entry.version)
    row["state"] = index_state(entry.state)
    row["reason"] = entry.reason
    return row


def _degraded(readiness: Readiness) -> list[str]:
    """What is degraded, in detail for callers allowed to see it (store URLs, paths)."""
    return [public_message(note, "a store is degraded") for note in readiness.degraded]
