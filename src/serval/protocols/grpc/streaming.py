"""Triton's ``ModelStreamInfer``: a bidirectional stream of inference requests.

Each request on the stream is answered by one ``ModelStreamInferResponse`` on the stream:
its ``infer_response`` on success, else its ``error_message`` (the stream stays open, as
Triton's does). Requests of one stream run concurrently, so responses may come out of order;
each carries its request's ``id`` (and, on an error, the request's model name and version too,
so that a client can tell which request failed). At most ``max_in_flight`` requests of a
stream are running or waiting to be sent at once: past that, the stream stops reading
requests until one is answered, which pushes back on the client through gRPC's flow control.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from serval.core.errors import ServalError
from serval.protocols.grpc.generated import grpc_service_pb2 as pb
from serval.security.access import client_message

logger = logging.getLogger(__name__)

MAX_IN_FLIGHT = 64  # requests of one stream that run or wait to be sent at once

Answer = Callable[[pb.ModelInferRequest], Awaitable[pb.ModelInferResponse]]


def error_reply(request: pb.ModelInferRequest, message: str) -> pb.ModelStreamInferResponse:
    """The stream's answer to ``request`` when it failed with ``message``."""
    reply = pb.ModelStreamInferResponse(error_message=message)
    reply.infer_response.model_name = request.model_name
    reply.infer_response.model_version = request.model_version
    reply.infer_response.id = request.id
    return reply


async def serve_stream(
    requests: AsyncIterator[pb.ModelInferRequest],
    answer: Answer,
    *,
    max_in_flight: int = MAX_IN_FLIGHT,
) -> AsyncIterator[pb.ModelStreamInferResponse]:
    """Answer every request of ``requests`` with ``answer``, one reply each, as they finish.
    A ``ServalError`` becomes the reply's ``error_message``; so does any other exception
    (logged), as an internal error, since one failed request must not end the stream."""
    replies: asyncio.Queue[pb.ModelStreamInferResponse | None] = asyncio.Queue(max_in_flight)
    slots = asyncio.Semaphore(max_in_flight)
    running: set[asyncio.Task[None]] = set()

    async def run(request: pb.ModelInferRequest) -> None:
        try:
            try:
                reply = pb.ModelStreamInferResponse(infer_response=await answer(request))
            except ServalError as exc:
                reply = error_reply(request, client_message(exc))
            except Exception as exc:
                logger.exception("gRPC ModelStreamInfer: a request failed")
                reply = error_reply(
                    request, f"internal error in ModelStreamInfer: {type(exc).__name__}: {exc}"
                )
            await replies.put(reply)
        finally:
            slots.release()

    async def read() -> None:
        try:
            async for request in requests:
                await slots.acquire()
                task = asyncio.create_task(run(request))
                running.add(task)
                task.add_done_callback(running.discard)
            while running:  # the client closed its side: answer what it sent
                await asyncio.wait(set(running))
        finally:
            await replies.put(None)

    reader = asyncio.create_task(read())
    try:
        while (reply := await replies.get()) is not None:
            yield reply
        await reader  # a failure reading the stream (other than a request's) ends the call
    finally:
        for task in (reader, *running):
            task.cancel()
