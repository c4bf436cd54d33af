"""Many clients at once: each gets its own answer."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from serval.testing import run_server
from tests.onnx_models import linear, write_model

pytestmark = pytest.mark.e2e

CLIENTS = 64
ROUNDS = 5


async def one_client(url: str, client_id: int) -> list[tuple[float, float]]:
    answers = []
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        for round_ in range(ROUNDS):
            value = client_id * 100 + round_
            body = {
                "id": f"{client_id}-{round_}",
                "inputs": [
                    {"name": "x", "datatype": "FP32", "shape": [1, 2], "data": [value, 1.0]}
                ],
            }
            response = await http.post("/v2/models/m/infer", json=body)
            assert response.status_code == 200, response.text
            doc = response.json()
            assert doc["id"] == f"{client_id}-{round_}"
            answers.append((2.0 * value + 3.0, doc["outputs"][0]["data"][0]))
    return answers


def test_64_concurrent_clients_get_their_own_results(tmp_path: Path) -> None:
    write_model(tmp_path, "m", 1, linear([2.0, 3.0], 0.0))
    with run_server(tmp_path, grpc=False) as server:

        async def main() -> list[list[tuple[float, float]]]:
            return await asyncio.gather(*(one_client(server.http_url, i) for i in range(CLIENTS)))

        results = asyncio.run(main())
    pairs = [pair for answers in results for pair in answers]
    assert len(pairs) == CLIENTS * ROUNDS
    assert all(expected == got for expected, got in pairs)
