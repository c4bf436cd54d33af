"""gRPC end to end with tritonclient.grpc.aio: the basics, errors, and 64 concurrent clients
each getting its own answer."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc.aio as triton_aio
from tritonclient.grpc import InferInput, InferRequestedOutput
from tritonclient.utils import InferenceServerException

from serval.testing import RunningServer, run_server
from tests.e2e.grpc_models import build_repository

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    repository = build_repository(tmp_path_factory.mktemp("repository"))
    with run_server(repository) as running:
        yield running


def with_client(
    server: RunningServer, body: Callable[[triton_aio.InferenceServerClient], Awaitable[Any]]
) -> Any:
    async def scenario() -> Any:
        async with triton_aio.InferenceServerClient(server.grpc_address) as client:
            return await body(client)

    return asyncio.run(scenario())


def infer_input(name: str, data: np.ndarray, datatype: str) -> InferInput:
    tensor = InferInput(name, list(data.shape), datatype)
    tensor.set_data_from_numpy(data)
    return tensor


def test_health_and_metadata(server: RunningServer) -> None:
    async def body(client: triton_aio.InferenceServerClient) -> None:
        assert await client.is_server_live()
        assert await client.is_server_ready()
        assert await client.is_model_ready("identity_int64")
        metadata = await client.get_model_metadata("identity_int64", as_json=True)
        assert metadata["inputs"] == [
            {"name": "INPUT0", "datatype": "INT64", "shape": ["-1", "-1"]}
        ]
        assert (await client.get_server_metadata(as_json=True))["name"] == "serval"

    with_client(server, body)


def test_infer_and_versions(server: RunningServer) -> None:
    async def body(client: triton_aio.InferenceServerClient) -> None:
        a = np.array([[1, 2, 3, 4]], np.float32)
        b = np.array([[4, 3, 2, 1]], np.float32)
        result = await client.infer(
            "add_sub",
            [infer_input("INPUT0", a, "FP32"), infer_input("INPUT1", b, "FP32")],
            outputs=[InferRequestedOutput("OUTPUT0")],
            request_id="aio",
        )
        assert result.get_response().id == "aio"
        assert result.as_numpy("OUTPUT0").tolist() == [[5, 5, 5, 5]]
        assert result.as_numpy("OUTPUT1") is None
        one = await client.infer(
            "versioned", [infer_input("INPUT0", a[0], "FP32")], model_version="1"
        )
        assert one.as_numpy("OUTPUT0").tolist() == (a[0] + 1).tolist()

    with_client(server, body)


def test_errors_have_their_status(server: RunningServer) -> None:
    async def status(call: Awaitable[Any]) -> str:
        with pytest.raises(InferenceServerException) as info:
            await call
        return str(info.value.status())

    async def body(client: triton_aio.InferenceServerClient) -> None:
        bad = infer_input("INPUT0", np.zeros((1, 1), np.int64), "INT64")
        assert await status(client.infer("identity_fp32", [bad])) == "StatusCode.INVALID_ARGUMENT"
        assert await status(client.infer("nope", [bad])) == "StatusCode.NOT_FOUND"
        assert await status(client.get_model_metadata("identity_fp32", "5")) == (
            "StatusCode.NOT_FOUND"
        )

    with_client(server, body)


def test_64_concurrent_clients_each_get_their_own_answer(server: RunningServer) -> None:
    async def one(index: int) -> tuple[int, np.ndarray, np.ndarray, list[bytes]]:
        numbers = np.full((2, 4), index, np.float32) + np.arange(4, dtype=np.float32)
        words = np.array([[f"client-{index}-{i}".encode() for i in range(3)]], dtype=np.object_)
        async with triton_aio.InferenceServerClient(server.grpc_address) as client:
            add_sub, echo = await asyncio.gather(
                client.infer(
                    "add_sub",
                    [
                        infer_input("INPUT0", numbers, "FP32"),
                        infer_input("INPUT1", numbers, "FP32"),
                    ],
                    request_id=str(index),
                ),
                client.infer("identity_bytes", [infer_input("INPUT0", words, "BYTES")]),
            )
        assert add_sub.get_response().id == str(index)
        return index, numbers, add_sub.as_numpy("OUTPUT0"), echo.as_numpy("OUTPUT0").tolist()

    async def scenario() -> list[tuple[int, np.ndarray, np.ndarray, list[bytes]]]:
        return await asyncio.gather(*(one(i) for i in range(64)))

    results = asyncio.run(scenario())
    assert [index for index, *_ in results] == list(range(64))
    for index, numbers, doubled, words in results:
        np.testing.assert_array_equal(doubled, numbers * 2)
        assert words == [[f"client-{index}-{i}".encode() for i in range(3)]]
