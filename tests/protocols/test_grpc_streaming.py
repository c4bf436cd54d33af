"""ModelStreamInfer's loop: one reply per request, errors as messages, bounded concurrency."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from serval.core.errors import InvalidInputError
from serval.protocols.grpc.generated import grpc_service_pb2 as pb
from serval.protocols.grpc.streaming import serve_stream


async def _requests(*ids: str) -> AsyncIterator[pb.ModelInferRequest]:
    for request_id in ids:
        yield pb.ModelInferRequest(model_name="m", model_version="2", id=request_id)


def test_each_request_is_answered_and_errors_stay_in_the_stream() -> None:
    async def answer(request: pb.ModelInferRequest) -> pb.ModelInferResponse:
        if request.id == "bad":
            raise InvalidInputError("bad input")
        if request.id == "boom":
            raise RuntimeError("kaput")
        return pb.ModelInferResponse(model_name="m", id=request.id)

    async def run() -> list[pb.ModelStreamInferResponse]:
        return [r async for r in serve_stream(_requests("a", "bad", "boom", "b"), answer)]

    replies = asyncio.run(run())
    by_id = {r.infer_response.id: r for r in replies}
    assert sorted(by_id) == ["a", "b", "bad", "boom"]
    assert by_id["a"].error_message == "" and by_id["b"].error_message == ""
    assert by_id["bad"].error_message == "bad input"
    assert by_id["bad"].infer_response.model_version == "2"
    assert "RuntimeError: kaput" in by_id["boom"].error_message


@pytest.mark.timeout(30)
def test_requests_run_concurrently_up_to_the_bound() -> None:
    running = 0
    most = 0
    release = asyncio.Event()

    async def answer(request: pb.ModelInferRequest) -> pb.ModelInferResponse:
        nonlocal running, most
        running += 1
        most = max(most, running)
        if most == 3:
            release.set()
        await release.wait()  # every request waits until three run at once
        running -= 1
        return pb.ModelInferResponse(id=request.id)

    async def run() -> list[str]:
        ids = [str(i) for i in range(7)]
        stream = serve_stream(_requests(*ids), answer, max_in_flight=3)
        return [reply.infer_response.id async for reply in stream]

    assert sorted(asyncio.run(run())) == [str(i) for i in range(7)]
    assert most == 3
