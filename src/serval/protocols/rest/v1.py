"""TF Serving's V1 REST API (and KServe V1's liveness, model list and status shapes).

``POST /v1/models/{m}[/versions/{v}|/labels/{l}]:predict`` with ``instances`` (row format) or
``inputs`` (columnar), and ``signature_name`` (a Python model's or a SavedModel's signature); ``GET
/v1/models/{m}[...]`` status and ``.../metadata``; ``GET /`` (KServe V1's liveness).
"""

from __future__ import annotations

import re
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from serval.core.dataplane import DataPlane
from serval.core.errors import (
    InvalidInputError,
    ModelNotFoundError,
    ServalError,
    UnsupportedError,
)
from serval.core.lifecycle.states import ServableState
from serval.core.records import RequestRecord
from serval.core.tensors.signatures import signature_metadata
from serval.core.types import (
    InferenceRequest,
    InferenceResponse,
    ModelMetadata,
    ServableMetadata,
    Tensor,
    TensorSpec,
)
from serval.observability.logging import current_request
from serval.protocols.oip.tf_serving import (
    PREDICT_METHOD,
    TF_DTYPES,
    select_signature,
    signature_defs,
)
from serval.protocols.rest.body import parse_json_object, read_body
from serval.protocols.rest.errors import MODEL_VERSION_HEADER
from serval.protocols.rest.json_tensors import array_to_json, dumps_json, json_to_array
from serval.protocols.rest.schedule_headers import (
    PRIORITY_HEADER,
    TIMEOUT_HEADER,
    apply_schedule_headers,
)
from serval.security.access import public_message

# TF Serving's own patterns (http_rest_api_util.cc), case-insensitive; \d is ASCII digits only.
# KServe V1's :explain is matched too, to answer that it is not supported rather than 404.
_PREDICT = re.compile(
    r"^([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?:(classify|regress|predict|explain)$",
    re.I | re.ASCII,
)
PROTOCOL = "rest_v1"
_PREDICT_ROUTE = "POST /v1/models/{model}:predict"  # the span name
_STATUS = re.compile(
    r"^([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?(?:/(metadata))?$", re.I | re.ASCII
)


def _json(content: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    # TF Serving accepts and emits NaN/Infinity; orjson writes them as null.
    return Response(
        dumps_json(content),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


class V1Routes:
    def __init__(
        self,
        dataplane: DataPlane,
        max_request_bytes: int,
    ) -> None:
        self._dataplane = dataplane
        self._limit = max_request_bytes

    def routes(self) -> list[Route]:
        return [
            Route("/", self.live, methods=["GET"]),
            Route("/v1/models", self.list_models, methods=["GET"]),
            Route("/v1/models/{path:path}", self.get, methods=["GET"]),
            Route("/v1/models/{path:path}", self.post, methods=["POST"]),
        ]

    async def live(self, request: Request) -> Response:
        """KServe V1's liveness: what its SDK and probes read (V2's is /v2/health/live)."""
        if self._dataplane.live():
            return _json({"status": "alive"})
        return _json({"status": "not alive"}, 503)

    async def list_models(self, request: Request) -> Response:
        return _json({"models": self._dataplane.model_names()})

    async def get(self, request: Request) -> Response:
        match = _STATUS.match(request.path_params["path"])
        if match is None:
            raise ModelNotFoundError(f"no V1 resource at {request.url.path}")
        name, version, label, metadata = match.groups()
        if label is not None:
            version = str(self._dataplane.label_version(name, label))
        if metadata:
            meta = self._dataplane.model_metadata(name, version)
            return _json(_metadata_json(meta, version))
        statuses = self._dataplane.model_status(name, version)
        return _json(
            {
                "name": name,
                "ready": any(s.state is ServableState.AVAILABLE for s in statuses),
                "model_version_status": [
                    {
                        "version": str(s.id.version),
                        "state": s.state.value,
                        "status": {
                            "error_code": "UNKNOWN" if s.error else "OK",
                            "error_message": public_message(s.error, "failed to load")
                            if s.error
                            else "",
                        },
                    }
                    for s in statuses
                ],
            }
        )

    async def post(self, request: Request) -> Response:
        # One record per request, finished on every path (see core.records).
        dataplane = self._dataplane
        record = RequestRecord(PROTOCOL, _PREDICT_ROUTE, "", time.perf_counter_ns())
        if dataplane.wants_headers:
            record.headers = request.headers
        try:
            match = _PREDICT.match(request.path_params["path"])
            if match is None:
                raise ModelNotFoundError(
                    f"no V1 resource at {request.url.path}; expected "
                    f"/v1/models/<name>[/versions/<n>|/labels/<label>]:predict"
                )
            name, version, label, verb = match.groups()
            record.model = name
            if verb.lower() == "explain":
                raise UnsupportedError(
                    ":explain is not supported: serval serves models, not KServe explainers; "
                    "use :predict, or run the explainer as a model of its own"
                )
            if verb.lower() != "predict":
                raise UnsupportedError(f":{verb} is not supported; use :predict")
            doc = parse_json_object(await read_body(request, self._limit))
            if ("instances" in doc) == ("inputs" in doc):
                raise InvalidInputError("request must have exactly one of 'instances' or 'inputs'")
            signature_name = doc.get("signature_name", "")
            if not isinstance(signature_name, str):
                raise InvalidInputError("'signature_name' must be a string")
            log_context = current_request()  # the request-id middleware's: x-request-id
            infer_request = InferenceRequest(
                model_name=name,
                model_version=version,
                inputs=[],
                id=log_context.request_id if log_context is not None else None,
                record=record,
            )
            sticky = dataplane.sticky_headers  # empty unless a traffic policy keeps users
            if sticky and (sticky_header := sticky.get(name)) is not None:
                infer_request.routing_key = request.headers.get(sticky_header)
            # One handle decodes and runs the request, so a reload between the two can never
            # decode by one version's metadata and run on the next.
            async with dataplane.lease(infer_request, label) as handle:
                try:
                    metadata = handle.metadata
                    select_signature(infer_request, metadata, signature_name)
                    # The named signature's own inputs, where signatures declare their own.
                    metadata = signature_metadata(metadata, infer_request.parameters)
                    row_format = "instances" in doc
                    if row_format:
                        infer_request.inputs = _decode_instances(doc["instances"], metadata)
                    else:
                        infer_request.inputs = _decode_columns(doc["inputs"], metadata)
                    headers = request.headers
                    apply_schedule_headers(
                        infer_request, headers.get(TIMEOUT_HEADER), headers.get(PRIORITY_HEADER)
                    )
                    response = await dataplane.infer(infer_request, handle=handle)
                    version_header = {MODEL_VERSION_HEADER: response.model_version or ""}
                    if row_format:
                        reply = _json({"predictions": _rows(response)}, headers=version_header)
                    else:
                        reply = _json({"outputs": _columns(response)}, headers=version_header)
                except ServalError as exc:  # on this version: its error says so
                    if exc.servable is None:
                        exc.servable = handle.id
                    raise
        except BaseException as exc:
            dataplane.finish(record, exc)
            raise
        dataplane.finish(record)
        return reply


def _decode_instances(instances: Any, metadata: ServableMetadata) -> list[Tensor]:
    if not isinstance(instances, list) or not instances:
        raise InvalidInputError("'instances' must be a non-empty list")
    named = all(isinstance(row, dict) and "b64" not in row for row in instances)
    if not named:
        if len(metadata.inputs) != 1:
            names = ", ".join(s.name for s in metadata.inputs)
            raise InvalidInputError(
                f"the model has {len(metadata.inputs)} inputs ({names}): each instance must be "
                f"an object naming them"
            )
        spec = metadata.inputs[0]
        return [_tensor(spec, instances, "instances")]
    tensors = []
    for spec in metadata.inputs:
        missing = [i for i, row in enumerate(instances) if spec.name not in row]
        if missing:
            raise InvalidInputError(f"instances[{missing[0]}] has no input {spec.name!r}")
        column = [row[spec.name] for row in instances]
        tensors.append(_tensor(spec, column, f"instances: input {spec.name!r}"))
    _check_unknown({key for row in instances for key in row}, metadata, "instances")
    return tensors


def _decode_columns(inputs: Any, metadata: ServableMetadata) -> list[Tensor]:
    if isinstance(inputs, dict) and "b64" not in inputs:
        _check_unknown(set(inputs), metadata, "inputs")
        missing = [s.name for s in metadata.inputs if s.name not in inputs]
        if missing:
            raise InvalidInputError(f"'inputs' has no input {missing[0]!r}")
        return [_tensor(s, inputs[s.name], f"inputs: input {s.name!r}") for s in metadata.inputs]
    if len(metadata.inputs) != 1:
        raise InvalidInputError(
            f"the model has {len(metadata.inputs)} inputs: 'inputs' must be an object naming them"
        )
    spec = metadata.inputs[0]
    return [_tensor(spec, inputs, "inputs")]


def _check_unknown(keys: set[str], metadata: ServableMetadata, where: str) -> None:
    unknown = keys - {s.name for s in metadata.inputs}
    if unknown:
        raise InvalidInputError(
            f"{where}: unknown input(s) {', '.join(sorted(unknown))}; expected "
            f"{', '.join(s.name for s in metadata.inputs)}"
        )


def _tensor(spec: TensorSpec, data: Any, what: str) -> Tensor:
    return Tensor(spec.name, spec.datatype, json_to_array(data, spec.datatype, what))


def _rows(response: InferenceResponse) -> Any:
    columns = {t.name: _output_json(t) for t in response.outputs}
    if len(columns) == 1:
        return next(iter(columns.values()))
    lengths = {len(value) if hasattr(value, "__len__") else 0 for value in columns.values()}
    if len(lengths) != 1:
        raise InvalidInputError("outputs differ in their first dimension; use 'inputs' instead")
    (count,) = lengths
    return [{name: value[i] for name, value in columns.items()} for i in range(count)]


def _columns(response: InferenceResponse) -> Any:
    columns = {t.name: _output_json(t) for t in response.outputs}
    return next(iter(columns.values())) if len(columns) == 1 else columns


def _output_json(tensor: Tensor) -> Any:
    # TF Serving returns outputs whose name ends in _bytes as base64.
    return array_to_json(tensor.data, tensor.datatype, b64=tensor.name.endswith("_bytes"))


def _metadata_json(metadata: ModelMetadata, version: str | None) -> dict[str, Any]:
    def signature(specs: tuple[TensorSpec, ...]) -> dict[str, Any]:
        return {
            spec.name: {
                "dtype": TF_DTYPES[spec.datatype],
                "tensor_shape": {
                    "dim": [{"size": str(dim), "name": ""} for dim in spec.shape],
                    "unknown_rank": False,
                },
                "name": spec.name,
            }
            for spec in specs
        }

    if version is None:
        version = metadata.versions[-1] if metadata.versions else ""
    return {
        "model_spec": {"name": metadata.name, "signature_name": "", "version": version},
        "metadata": {
            "signature_def": {
                "signature_def": {
                    name: {
                        "inputs": signature(inputs),
                        "outputs": signature(outputs),
                        "method_name": PREDICT_METHOD,
                    }
                    for name, inputs, outputs in signature_defs(metadata)
                }
            }
        },
    }
