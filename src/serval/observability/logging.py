"""Logs: JSON lines for machines, readable lines for people, each tagged with its request id.

``configure_logging`` sets up the root logger once, at the edge (``serval serve``). The format
``auto`` writes JSON lines unless the stream is a terminal. A JSON line holds ``time``,
``level``, ``logger``, ``message`` (the same text a readable line has), ``request_id`` when the
line is about a request, ``exception`` when one is attached, and the fields passed as
``extra``.

The request id travels in a context variable: the adapter binds a ``RequestLogContext`` when a
request arrives (``begin_request``), and every line logged while that request is handled, in
its task, carries the id. Ids come from the client (``x-request-id``, else the protocol's own
request ``id``) when they are short printable ASCII, otherwise serval generates one.
"""

from __future__ import annotations

import itertools
import logging
import random
import sys
import time
from contextvars import ContextVar
from typing import Any, Literal, TextIO

import orjson

LogFormat = Literal["auto", "json", "text"]
TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
REQUEST_ID_HEADER = "x-request-id"
# Generated request ids: random per process, then a counter (cheaper than random bits per
# request; unique across replicas with overwhelming probability).
_ID_PREFIX = b"%012x-" % random.getrandbits(48)
_ID_COUNTER = itertools.count(1)
_MAX_ID_CHARS = 128
access_logger = logging.getLogger("serval.access")


class RequestLogContext:
    """The request a task is handling, as logs and the ``x-request-id`` header need it."""

    __slots__ = ("_given", "_id", "_raw")

    def __init__(self, given_id: str | None = None) -> None:
        self._given = given_id is not None
        self._id = given_id
        self._raw: bytes | None = None  # the id as header bytes, once asked for

    @property
    def request_id(self) -> str:
        if self._id is None:
            self._id = self.header_value().decode("ascii")
        return self._id

    def header_value(self) -> bytes:
        """The id for the ``x-request-id`` response header (generated if there is none)."""
        raw = self._raw
        if raw is None:
            if self._id is None:
                raw = b"%s%x" % (_ID_PREFIX, next(_ID_COUNTER))
            else:
                raw = self._id.encode("ascii")
            self._raw = raw
        return raw

    def adopt(self, protocol_id: str | None) -> None:
        """Use the protocol's own request id (V2 ``id``) unless a header gave one."""
        if not self._given and protocol_id and valid_request_id(protocol_id):
            self._id = protocol_id
            self._raw = None
            self._given = True


# Context variables are per task: concurrent requests (and parallel tests) never share one.
_current: ContextVar[RequestLogContext | None] = ContextVar("serval_request", default=None)


def valid_request_id(value: str) -> bool:
    """Short printable ASCII: safe in a header and in a log line."""
    return 0 < len(value) <= _MAX_ID_CHARS and value.isascii() and value.isprintable()


def begin_request(given_id: str | None = None) -> RequestLogContext:
    """Bind a new request to the current task; an invalid ``given_id`` is replaced."""
    if given_id is not None and not valid_request_id(given_id):
        given_id = None
    context = RequestLogContext(given_id)
    _current.set(context)
    return context


def current_request() -> RequestLogContext | None:
    return _current.get()


def adopt_request_id(protocol_id: str | None) -> None:
    context = _current.get()
    if context is not None:
        context.adopt(protocol_id)


# -- formatting ------------------------------------------------------------------------------

_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": _iso_time(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        context = _current.get()
        if context is not None:
            line["request_id"] = context.request_id
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(line, default=str).decode()


class TextFormatter(logging.Formatter):
    """The readable format, with ``[request id]`` after the message when there is one."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        text = super().formatMessage(record)
        context = _current.get()
        return f"{text} [{context.request_id}]" if context is not None else text


def _iso_time(created: float) -> str:
    seconds = int(created)
    millis = int((created - seconds) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


def configure_logging(
    level: str = "info", log_format: LogFormat = "auto", stream: TextIO | None = None
) -> logging.Handler:
    """Send every log record at ``level`` or above to ``stream`` (stderr) in ``log_format``.

    Replaces the root logger's handlers; returns the new one.
    """
    stream = stream if stream is not None else sys.stderr
    if log_format == "auto":
        log_format = "text" if _is_terminal(stream) else "json"
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    return handler


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def log_access(message: str, *args: object, **fields: object) -> None:
    """One access log line (``serval.access``); ``fields`` become JSON fields."""
    access_logger.info(message, *args, extra=fields)
