"""The REST inference fast path's parts: route matching, schedule headers, write coalescing."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest

from serval.core.errors import InvalidInputError
from serval.core.records import RequestRecord
from serval.core.tensors.datatypes import DataType
from serval.core.types import InferenceRequest, Tensor
from serval.observability.requests import outcome_of
from serval.protocols.rest.coalescing import _CoalescingTransport
from serval.protocols.rest.schedule_headers import apply_schedule_headers
from serval.protocols.rest.v2_infer import V2InferEndpoint, infer_target


@pytest.mark.parametrize(
    ("path", "target"),
    [
        ("/v2/models/m/infer", ("m", None)),
        ("/v2/models/m/versions/3/infer", ("m", "3")),
        ("/v2/models/stats/infer", ("stats", None)),
        ("/v2/models/infer", None),
        ("/v2/models//infer", None),
        ("/v2/models/m/versions//infer", None),
        ("/v2/models/m/versions/3/x/infer", None),
        ("/v2/models/m/labels/3/infer", None),
        ("/v2/models/m/infer/", None),
        ("/v2/models/m/ready", None),
        ("/v1/models/m/infer", None),
    ],
)
def test_infer_target_matches_what_the_router_would(
    path: str, target: tuple[str, str | None] | None
) -> None:
    assert infer_target(path) == target


def request(**parameters: Any) -> InferenceRequest:
    tensor = Tensor("x", DataType.FP32, np.zeros((1, 1), np.float32))
    return InferenceRequest(
        model_name="m", model_version=None, inputs=[tensor], parameters=parameters
    )


def test_timeout_header_sets_a_deadline_and_the_earlier_one_wins() -> None:
    plain = request()
    apply_schedule_headers(plain, "2000", None, now=100.0)
    assert plain.deadline == pytest.approx(100.002)
    earlier = request()
    earlier.deadline = 100.001  # e.g. from the `timeout` parameter
    apply_schedule_headers(earlier, "2000", None, now=100.0)
    assert earlier.deadline == pytest.approx(100.001)
    none = request()
    apply_schedule_headers(none, "0", None, now=100.0)  # 0: no deadline, as the parameter
    assert none.deadline is None


def test_priority_header_yields_to_the_parameter() -> None:
    from_header = request()
    apply_schedule_headers(from_header, None, " 2 ", now=0.0)
    assert from_header.priority == 2
    from_parameter = request(priority=1)
    from_parameter.priority = 1
    apply_schedule_headers(from_parameter, None, "3", now=0.0)
    assert from_parameter.priority == 1


@pytest.mark.parametrize(("timeout", "priority"), [("1.5", None), ("-1", None), (None, "top")])
def test_bad_schedule_headers_name_the_header(timeout: str | None, priority: str | None) -> None:
    with pytest.raises(InvalidInputError, match="header 'timeout'" if timeout else "'priority'"):
        apply_schedule_headers(request(), timeout, priority, now=0.0)


class FakeTransport:
    def __init__(self) -> None:
        self.writes: list[list[bytes]] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append([data])

    def writelines(self, chunks: list[bytes]) -> None:
        self.writes.append(list(chunks))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str) -> str:
        return f"info:{name}"


def test_writes_of_one_loop_turn_leave_in_one_call() -> None:
    asyncio.run(writes_of_one_loop_turn_leave_in_one_call())


async def writes_of_one_loop_turn_leave_in_one_call() -> None:
    inner = FakeTransport()
    transport = _CoalescingTransport(inner, asyncio.get_running_loop())  # type: ignore[arg-type]
    transport.write(b"HTTP/1.1 200 OK\r\n\r\n")
    transport.write(b"body")
    assert inner.writes == []  # held until the end of this turn
    await asyncio.sleep(0)
    assert inner.writes == [[b"HTTP/1.1 200 OK\r\n\r\n", b"body"]]
    transport.write(b"next")
    await asyncio.sleep(0)
    assert inner.writes[-1] == [b"next"]  # a lone write goes out as it is
    assert transport.get_extra_info("peername") == "info:peername"  # the rest is delegated


def test_large_writes_leave_at_once() -> None:
    asyncio.run(large_writes_leave_at_once())


async def large_writes_leave_at_once() -> None:
    inner = FakeTransport()
    transport = _CoalescingTransport(inner, asyncio.get_running_loop())  # type: ignore[arg-type]
    transport.write(b"HTTP/1.1 200 OK\r\n\r\n")
    body = b"x" * (1 << 20)
    transport.write(body)
    assert inner.writes == [[b"HTTP/1.1 200 OK\r\n\r\n", body]]  # no wait for the turn's end
    await asyncio.sleep(0)
    assert len(inner.writes) == 1  # and nothing left to flush


def test_close_sends_what_is_held_first() -> None:
    asyncio.run(close_sends_what_is_held_first())


async def close_sends_what_is_held_first() -> None:
    inner = FakeTransport()
    transport = _CoalescingTransport(inner, asyncio.get_running_loop())  # type: ignore[arg-type]
    transport.write(b"last words")
    transport.close()
    assert inner.writes == [[b"last words"]] and inner.closed
    await asyncio.sleep(0)
    assert inner.writes == [[b"last words"]]  # flushed once, not again


class ReadyDataPlane:
    wants_headers = False
    sticky_headers: dict[str, str] = {}

    def __init__(self) -> None:
        self.records: list[RequestRecord] = []

    def model_ready(self, name: str, version: str | None) -> bool:
        return True

    def finish(self, record: RequestRecord, error: BaseException | None = None) -> None:
        record.error = error
        self.records.append(record)


def test_a_client_that_leaves_before_its_body_is_counted_as_cancelled() -> None:
    dataplane = ReadyDataPlane()
    endpoint = V2InferEndpoint(dataplane, 1 << 20)  # type: ignore[arg-type]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/v2/models/m/infer", "headers": []}
    asyncio.run(endpoint(scope, receive, send))
    assert sent == []  # no one to answer
    assert [outcome_of(r.error) for r in dataplane.records] == ["cancelled"]  # once
