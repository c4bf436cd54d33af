"""``serval serve --workers 2``: two processes answer on the same REST and gRPC ports, a killed
worker is replaced, and SIGTERM stops them all cleanly."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from collections.abc import Set as AbstractSet
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton

from serval.testing import RunningServer, run_server
from tests.onnx_models import linear, write_model

pytestmark = pytest.mark.e2e

WAIT_S = 60.0


@pytest.fixture
def repository(tmp_path: Path) -> Path:
    write_model(tmp_path, "linear", 1, linear([1.0, 2.0], 0.5))
    return tmp_path


def infer(server: RunningServer, x: list[float]) -> tuple[float, int]:
    """y for one row, and the pid of the worker that answered (on a new connection)."""
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 2], "data": x}]}
    reply = httpx.post(f"{server.http_url}/v2/models/linear/infer", json=body, timeout=10)
    assert reply.status_code == 200, reply.text
    return reply.json()["outputs"][0]["data"][0], int(reply.headers["serval-worker"])


def workers_answering(
    server: RunningServer, count: int, exclude: AbstractSet[int] = frozenset()
) -> set[int]:
    """Send requests on new connections until ``count`` workers not in ``exclude`` answered."""
    seen: set[int] = set()
    deadline = time.monotonic() + WAIT_S
    while len(seen - exclude) < count:
        assert time.monotonic() < deadline, f"only workers {seen} answered:\n{server.log()}"
        try:
            y, pid = infer(server, [1.0, 1.0])
        except httpx.TransportError:  # a worker going away drops its connections
            continue
        assert y == pytest.approx(3.5)
        seen.add(pid)
    return seen - exclude


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.fixture
def server(repository: Path) -> Iterator[RunningServer]:
    with run_server(repository, "--workers", "2", "--log-format", "text") as running:
        yield running


def test_two_workers_serve_both_protocols_and_stop_on_sigterm(server: RunningServer) -> None:
    pids = workers_answering(server, 2)
    assert server.process.pid not in pids  # the parent serves nothing
    for pid in pids:
        status = Path(f"/proc/{pid}/status").read_text()
        assert f"PPid:\t{server.process.pid}\n" in status

    with triton.InferenceServerClient(server.grpc_address) as grpc_client:
        x = triton.InferInput("x", [1, 2], "FP32")
        x.set_data_from_numpy(np.array([[2.0, 1.0]], np.float32))
        for _ in range(4):  # new channels land on either worker; each answers
            assert grpc_client.is_server_ready()
        result = grpc_client.infer("linear", [x])
        np.testing.assert_allclose(result.as_numpy("y"), [[4.5]])

    # One worker dies: the parent starts another in its place.
    killed = min(pids)
    os.kill(killed, signal.SIGKILL)
    (replacement,) = workers_answering(server, 1, exclude=pids)
    survivors = {*pids, replacement} - {killed}

    assert server.stop(signal.SIGTERM) == 0
    assert all(gone(pid) for pid in survivors)
    log = server.log()
    assert "exited unexpectedly with status -9" in log
    assert log.count("stopped with status 0") == 2
    assert "all workers stopped" in log
    assert "Traceback" not in log
