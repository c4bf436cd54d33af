"""Structured logs: JSON lines with the request id of the task's request, readable lines with
it in brackets, ``auto`` choosing by the stream, and which client ids are taken."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import sys

import pytest

from serval.observability.logging import (
    JsonFormatter,
    TextFormatter,
    adopt_request_id,
    begin_request,
    configure_logging,
    current_request,
    valid_request_id,
)


def record(message: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord("serval.test", logging.INFO, __file__, 1, message, args, None)


def in_request(given: str | None, body: str | None, make: object) -> object:
    """Run ``make()`` in a task of its own (its own context), as a request runs."""

    async def task() -> object:
        begin_request(given)
        adopt_request_id(body)
        return make()  # type: ignore[operator]

    return asyncio.run(task())


def test_json_line_fields_and_request_id() -> None:
    line = in_request("abc-1", None, lambda: JsonFormatter().format(record("model %s loaded", "m")))
    doc = json.loads(line)
    assert doc["message"] == "model m loaded"
    assert doc["level"] == "info" and doc["logger"] == "serval.test"
    assert doc["request_id"] == "abc-1"
    assert doc["time"].endswith("Z")


def test_json_line_extra_fields_and_exception() -> None:
    try:
        raise ValueError("bad")
    except ValueError:
        failing = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    failing.status = 503
    doc = json.loads(JsonFormatter().format(failing))
    assert doc["status"] == 503
    assert "ValueError: bad" in doc["exception"]
    assert "request_id" not in doc  # not about a request


def test_text_line_carries_the_request_id() -> None:
    line = in_request(None, "body-7", lambda: TextFormatter().format(record("hello")))
    assert line.endswith("serval.test: hello [body-7]")


def test_header_id_wins_over_the_protocol_id_and_bad_ids_are_replaced() -> None:
    assert in_request("hdr", "body", lambda: current_request().request_id) == "hdr"
    generated = in_request("bad\nid", "", lambda: current_request().request_id)
    assert isinstance(generated, str) and generated not in ("bad\nid", "")
    assert in_request(None, "x" * 200, lambda: current_request().request_id) != "x" * 200
    assert valid_request_id("a-b_c.1") and not valid_request_id("é") and not valid_request_id("")


def test_no_request_outside_a_request() -> None:
    assert asyncio.run(_current()) is None


async def _current() -> object:
    return current_request()


@pytest.mark.parametrize(("fmt", "is_json"), [("json", True), ("text", False), ("auto", True)])
def test_configure_logging(fmt: str, is_json: bool) -> None:
    stream = io.StringIO()  # not a terminal: auto means JSON
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        configure_logging("info", fmt, stream)  # type: ignore[arg-type]
        logging.getLogger("serval.test").info("shutting down: %s", "now")
        logging.getLogger("serval.test").debug("hidden")
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    (line,) = stream.getvalue().splitlines()
    if is_json:
        assert json.loads(line)["message"] == "shutting down: now"
    else:
        assert line.endswith("INFO    serval.test: shutting down: now")
