"""``POST /v2/models/{model}[/versions/{version}]/infer``, served as a bare ASGI app.

Inference is the one hot route, and for an overhead-bound model the server's own Python is
the cost: so it skips Starlette's router, its request and response objects and the request-id
middleware's ``send`` wrapper, reads the headers it needs once, and sends a response it built
itself (bench/README.md has the before and after). ``InferFastPath`` sends these requests here
ahead of the router; the router still lists the route, so other methods get its 405.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from functools import partial

from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from serval.core.dataplane import DataPlane
from serval.core.errors import ClientGoneError, ServalError
from serval.core.records import RequestRecord
from serval.observability.logging import begin_request
from serval.protocols.oip.classification import classify_response
from serval.protocols.oip.parameters import take_class_counts
from serval.protocols.rest.body import ClientDisconnected, read_asgi_body
from serval.protocols.rest.errors import (
    error_response,
    json_error,
    shutdown_error,
    unexpected_error,
)
from serval.protocols.rest.middleware import log_request
from serval.protocols.rest.schedule_headers import apply_schedule_headers
from serval.protocols.rest.v2_codec import decode_infer_request, encode_infer_response

PROTOCOL = "rest_v2"
# Span names: the route, without the client's values.
INFER_OPERATION = "POST /v2/models/{model}/infer"
VERSION_INFER_OPERATION = "POST /v2/models/{model}/versions/{version}/infer"
_PREFIX = "/v2/models/"
_SUFFIX = "/infer"
# ASGI header names arrive lower-cased.
_CONTENT_LENGTH = b"content-length"
_CONTENT_ENCODING = b"content-encoding"
_JSON_LENGTH = b"inference-header-content-length"
_REQUEST_ID = b"x-request-id"
_MODEL_VERSION = b"x-model-version"
_TIMEOUT = b"timeout"
_PRIORITY = b"priority"
_CLIENT_CLOSED = 499


def infer_target(path: str) -> tuple[str, str | None] | None:
    """(model, version or None) when ``path`` is an infer route, as the router would match
    it (names without slashes); else None."""
    if not (path.startswith(_PREFIX) and path.endswith(_SUFFIX)):
        return None
    parts = path[len(_PREFIX) : -len(_SUFFIX)].split("/")
    if len(parts) == 1:
        return (parts[0], None) if parts[0] else None
    if len(parts) == 3 and parts[1] == "versions" and parts[0] and parts[2]:
        return parts[0], parts[2]
    return None


class V2InferEndpoint:
    def __init__(
        self,
        dataplane: DataPlane,
        max_request_bytes: int,
        *,
        access_log: bool = False,
    ) -> None:
        self._dataplane = dataplane
        self._limit = max_request_bytes
        self._access_log = access_log
        self._sticky_headers = dataplane.sticky_headers  # one mapping, changed in place

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """As the router's route (reached only if ``InferFastPath`` is not in front)."""
        target = infer_target(scope["path"])
        if target is None:  # the router matched a path this module does not: a bug
            await json_error(404, f"no such endpoint: POST {scope['path']}")(scope, receive, send)
            return
        await self.serve(scope, receive, send, *target)

    async def serve(
        self, scope: Scope, receive: Receive, send: Send, model: str, version: str | None
    ) -> None:
        if not self._access_log:
            await self._serve(scope, receive, send, model, version)
            return
        started = time.perf_counter_ns()
        status = 500
        try:
            status = await self._serve(scope, receive, send, model, version)
        finally:
            log_request(scope, status, time.perf_counter_ns() - started)

    async def _serve(
        self, scope: Scope, receive: Receive, send: Send, model: str, version: str | None
    ) -> int:
        """Answers the request; returns the status sent, or 499 (nginx's "client closed
        request", for the access log) when the client left before its body arrived."""
        # One record per request, finished on every path (see core.records).
        record = RequestRecord(
            PROTOCOL,
            INFER_OPERATION if version is None else VERSION_INFER_OPERATION,
            model,
            time.perf_counter_ns(),
        )
        dataplane = self._dataplane
        if dataplane.wants_headers:
            record.headers = _trace_headers(scope)
        headers = dict(scope["headers"])  # one pass in C; a repeated header: the last wins
        given_id = headers.get(_REQUEST_ID)
        log_context = begin_request(given_id.decode("latin-1") if given_id is not None else None)
        try:
            # An unknown model is a 404 whatever the body holds.
            dataplane.model_ready(model, version)
            body = await read_asgi_body(
                receive,
                _text(headers.get(_CONTENT_LENGTH)),
                _text(headers.get(_CONTENT_ENCODING)),
                self._limit,
            )
            request, binary = decode_infer_request(
                body, _text(headers.get(_JSON_LENGTH)), model, version
            )
            timeout, priority = headers.get(_TIMEOUT), headers.get(_PRIORITY)
            if timeout is not None or priority is not None:
                apply_schedule_headers(request, _text(timeout), _text(priority))
            request.record = record
            class_counts = take_class_counts(request)
            request.client_gone = partial(_until_disconnected, receive)
            if self._sticky_headers:  # some model's traffic policy keeps users by a header
                request.routing_key = _sticky_key(self._sticky_headers, model, headers)
            # The client's id (V2 `id`, else x-request-id) or the server's: on the response
            # and its header, and the record's join key.
            log_context.adopt(request.id)
            if request.id is None:
                request.id = log_context.request_id
            response = await dataplane.infer(request)
            if class_counts:
                classify_response(dataplane, response, class_counts)
            encoded = encode_infer_response(response, binary)
        except ClientDisconnected:
            dataplane.finish(record, asyncio.CancelledError())
            return _CLIENT_CLOSED
        except ClientGoneError as exc:
            dataplane.finish(record, exc)
            return _CLIENT_CLOSED
        except ServalError as exc:
            dataplane.finish(record, exc)
            return await _send_error(error_response(exc), log_context.header_value(), send)
        except Exception as exc:
            dataplane.finish(record, exc)
            return await _send_error(unexpected_error(exc), log_context.header_value(), send)
        except asyncio.CancelledError as exc:  # the server is going away: a JSON 503
            dataplane.finish(record, exc)
            return await _send_error(shutdown_error(), log_context.header_value(), send)
        except BaseException as exc:  # SystemExit & co.: a JSON 500, and the server stays up
            dataplane.finish(record, exc)
            return await _send_error(unexpected_error(exc), log_context.header_value(), send)
        dataplane.finish(record)
        response_headers = [
            (b"content-type", encoded.media_type.encode("latin-1")),
            (b"content-length", b"%d" % len(encoded.body)),
            (_REQUEST_ID, log_context.header_value()),
            (_MODEL_VERSION, (response.model_version or "").encode("latin-1")),
        ]
        if encoded.json_length is not None:
            response_headers.append((_JSON_LENGTH, b"%d" % encoded.json_length))
        await send({"type": "http.response.start", "status": 200, "headers": response_headers})
        await send({"type": "http.response.body", "body": encoded.body})
        return 200


class InferFastPath:
    """Sends ``POST .../infer`` straight to ``endpoint``, every other request to ``app``."""

    def __init__(self, endpoint: V2InferEndpoint, app: ASGIApp) -> None:
        self._endpoint = endpoint
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            target = infer_target(scope["path"])
            if target is not None:
                await self._endpoint.serve(scope, receive, send, *target)
                return
        await self._app(scope, receive, send)


async def _send_error(reply: Response, request_id: bytes, send: Send) -> int:
    await send(
        {
            "type": "http.response.start",
            "status": reply.status_code,
            "headers": [*reply.raw_headers, (_REQUEST_ID, request_id)],
        }
    )
    await send({"type": "http.response.body", "body": reply.body})
    return reply.status_code


async def _until_disconnected(receive: Receive) -> None:
    """Returns when the client has gone (the body was read: only a disconnect is left)."""
    while (await receive())["type"] != "http.disconnect":
        pass


def _text(value: bytes | None) -> str | None:
    return value.decode("latin-1") if value is not None else None


def _trace_headers(scope: Scope) -> Mapping[str, str]:
    return {key.decode("latin-1"): value.decode("latin-1") for key, value in scope["headers"]}


def _sticky_key(sticky: Mapping[str, str], model: str, headers: dict[bytes, bytes]) -> str | None:
    """The value of the header ``model``'s traffic policy keeps users by, if any."""
    name = sticky.get(model)
    if name is None:
        return None
    value = headers.get(name.encode("latin-1"))
    return value.decode("latin-1") if value is not None else None
