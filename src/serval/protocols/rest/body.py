"""Reading a request body within the configured size limit, decompressing if asked.

Two readers share the checks: ``read_body`` for Starlette routes, ``read_asgi_body`` for the
inference endpoint, which reads ASGI messages itself (see ``v2_infer``).
"""

from __future__ import annotations

import zlib
from typing import Any

import orjson
from starlette.requests import Request
from starlette.types import Receive

from serval.core.errors import InvalidInputError, PayloadTooLargeError


class ClientDisconnected(Exception):  # noqa: N818 - a condition, not an error of ours
    """The client went away before its request body arrived: there is no one to answer."""


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body; 413 past ``limit`` bytes (before or after decompression)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        check_declared_length(declared, limit)
        body = await request.body()
    else:
        chunks = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise _too_large(size, limit)
            chunks.append(chunk)
        body = b"".join(chunks)
    return decompress(body, request.headers.get("content-encoding"), limit)


async def read_asgi_body(
    receive: Receive, declared: str | None, encoding: str | None, limit: int
) -> bytes:
    """As ``read_body``, from ASGI ``http.request`` messages; ``ClientDisconnected`` if the
    client leaves first."""
    if declared is not None:
        check_declared_length(declared, limit)
    message = await receive()
    if message["type"] == "http.disconnect":
        raise ClientDisconnected
    body: bytes = message.get("body", b"")
    if message.get("more_body", False):  # a body in several messages: rarer, and slower
        chunks = [body]
        size = len(body)
        while message.get("more_body", False):
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientDisconnected
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise _too_large(size, limit)
            chunks.append(chunk)
        body = b"".join(chunks)
    elif len(body) > limit:
        raise _too_large(len(body), limit)
    return decompress(body, encoding, limit) if encoding is not None else body


def check_declared_length(declared: str, limit: int) -> None:
    """400 for a Content-Length that is not a number, 413 for one past ``limit``."""
    if not (declared.isascii() and declared.isdigit()):  # int() refuses '²'
        raise InvalidInputError(f"Content-Length {declared!r} is not a number")
    if int(declared) > limit:
        raise _too_large(int(declared), limit)


def decompress(body: bytes, encoding: str | None, limit: int) -> bytes:
    """``body`` as sent with Content-Encoding ``encoding`` (None, identity, gzip or deflate)."""
    encoding = (encoding or "identity").lower()
    if encoding in ("identity", ""):
        return body
    if encoding not in ("gzip", "deflate"):
        raise InvalidInputError(f"Content-Encoding {encoding!r} is not supported (gzip, deflate)")
    # wbits 32+15 accepts gzip and zlib-wrapped deflate; -15 raw deflate, which some clients
    # send for "deflate".
    for wbits in (32 + zlib.MAX_WBITS, -zlib.MAX_WBITS):
        decompressor = zlib.decompressobj(wbits)
        try:
            inflated = decompressor.decompress(body, limit + 1)
            break
        except zlib.error as exc:
            if encoding == "gzip" or wbits < 0:
                raise InvalidInputError(f"body is not valid {encoding} data: {exc}") from exc
    if len(inflated) > limit or decompressor.unconsumed_tail:
        raise _too_large(len(inflated), limit)
    return inflated


def _too_large(size: int, limit: int) -> PayloadTooLargeError:
    return PayloadTooLargeError(
        f"request body of {size} bytes exceeds the limit of {limit} bytes (max_request_bytes)"
    )


def parse_json_object(data: bytes | memoryview) -> dict[str, Any]:
    """A JSON object from a request body; 400 naming the problem otherwise."""
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise InvalidInputError(f"request body is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise InvalidInputError("request body must be a JSON object")
    return doc
