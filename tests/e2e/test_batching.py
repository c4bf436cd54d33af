"""Dynamic batching end to end, on an ONNX model whose run time the request chooses: rows back
to their owners under 64 concurrent clients, fewer executions than requests, deadlines (REST
504, gRPC DEADLINE_EXCEEDED) and the queue bound (429 with Retry-After)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from serval.testing import RunningServer, run_server
from tests.e2e.workload import wait_for_workload
from tests.onnx_models import busy, write_model

pytestmark = pytest.mark.e2e

# `mixed` batches up to 32 rows; `single` has one instance and room for 2 waiting requests;
# `adaptive` keeps queue wait + execution under 500 ms.
MODELS = {
    "mixed": "max_batch_size: 32\nruntime_options: {intra_op_threads: 1}\n",
    "single": (
        "max_batch_size: 8\ninstances: 1\ndynamic_batching: {max_queue_size: 2}\n"
        "runtime_options: {intra_op_threads: 1}\n"
    ),
    "adaptive": (
        "max_batch_size: 8\ndynamic_batching: {mode: adaptive, latency_slo_ms: 500}\n"
        "runtime_options: {intra_op_threads: 1}\n"
    ),
}
CLIENTS = 64
ROUNDS = 3
WIDTH = 4
BUSY_S = 2.0  # how long a slow request keeps `single` busy


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    repository = tmp_path_factory.mktemp("repository")
    for name, config in MODELS.items():
        write_model(repository, name, 1, busy(WIDTH))
        (repository / name / "model.yaml").write_text(config)
    with run_server(repository, grpc=True) as running:
        yield running


def infer_body(
    rows: int, start: float, rounds: int = 0, **parameters: Any
) -> tuple[dict[str, Any], np.ndarray]:
    x = (start + np.arange(rows * WIDTH, dtype=np.float32)).reshape(rows, WIDTH)
    doc: dict[str, Any] = {
        "inputs": [
            {"name": "x", "datatype": "FP32", "shape": [rows, WIDTH], "data": x.ravel().tolist()},
            {"name": "n", "datatype": "INT64", "shape": [rows, 1], "data": [rounds] * rows},
        ]
    }
    if parameters:
        doc["parameters"] = parameters
    return doc, x


def post(server: RunningServer, model: str, doc: dict[str, Any]) -> httpx.Response:
    with httpx.Client(base_url=server.http_url, timeout=60) as http:
        return http.post(f"/v2/models/{model}/infer", json=doc)


def statistics(server: RunningServer, model: str) -> dict[str, Any]:
    reply = httpx.get(f"{server.http_url}/v2/models/{model}/stats", timeout=10)
    assert reply.status_code == 200, reply.text
    stats: dict[str, Any] = reply.json()["model_stats"][0]
    return stats


def assert_rows(reply: httpx.Response, x: np.ndarray) -> None:
    assert reply.status_code == 200, reply.text
    (output,) = reply.json()["outputs"]
    assert output["shape"] == list(x.shape)
    np.testing.assert_array_equal(np.array(output["data"], np.float32), x.ravel())


@pytest.fixture(scope="module")
def slow_rounds(server: RunningServer) -> int:
    """Rounds that keep a model busy for about BUSY_S on this machine."""
    probe = 2000
    started = time.perf_counter()
    doc, x = infer_body(1, 0.0, probe)
    assert_rows(post(server, "single", doc), x)
    took = time.perf_counter() - started
    return max(probe, int(probe * BUSY_S / took))


@pytest.fixture
def background() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(4) as pool:
        yield pool


def start_slow(
    pool: ThreadPoolExecutor, server: RunningServer, rounds: int
) -> tuple[Future[httpx.Response], np.ndarray]:
    doc, x = infer_body(1, -100.0, rounds)
    slow = pool.submit(post, server, "single", doc)
    wait_for_workload(server, "single", lambda now: now.running >= 1)  # on the only instance
    return slow, x


def test_64_concurrent_clients_with_mixed_rows_get_their_own_rows(server: RunningServer) -> None:
    async def client(http: httpx.AsyncClient, index: int) -> int:
        rows_sent = 0
        for round_ in range(ROUNDS):
            rows = 1 + (index + round_) % 4
            doc, x = infer_body(rows, 1000.0 * (index * ROUNDS + round_), rounds=50)
            doc["id"] = f"{index}-{round_}"
            reply = await http.post("/v2/models/mixed/infer", json=doc)
            assert_rows(reply, x)
            assert reply.json()["id"] == f"{index}-{round_}"
            rows_sent += rows
        return rows_sent

    async def main() -> int:
        limits = httpx.Limits(max_connections=CLIENTS)
        async with httpx.AsyncClient(base_url=server.http_url, timeout=60, limits=limits) as http:
            return sum(await asyncio.gather(*(client(http, i) for i in range(CLIENTS))))

    rows = asyncio.run(main())
    stats = statistics(server, "mixed")
    requests = CLIENTS * ROUNDS
    assert stats["inference_stats"]["success"]["count"] == requests
    assert stats["inference_count"] == rows
    assert stats["execution_count"] < requests
    batch_sizes = [entry["batch_size"] for entry in stats["batch_stats"]]
    assert max(batch_sizes) > 1
    assert max(batch_sizes) <= 32
    executions = sum(entry["compute_infer"]["count"] for entry in stats["batch_stats"])
    assert executions == stats["execution_count"]


def test_an_expired_timeout_is_a_504_before_running(server: RunningServer) -> None:
    before = statistics(server, "single")
    doc, _ = infer_body(1, 0.0, timeout=1)  # 1 µs: past before the model could take it
    reply = post(server, "single", doc)
    assert reply.status_code == 504, reply.text
    assert "deadline" in reply.json()["error"]
    after = statistics(server, "single")
    assert after["execution_count"] == before["execution_count"]


def test_a_timeout_that_passes_in_the_queue_is_a_504_and_never_runs(
    server: RunningServer, slow_rounds: int, background: ThreadPoolExecutor
) -> None:
    before = statistics(server, "single")
    slow, slow_x = start_slow(background, server, slow_rounds)
    doc, _ = infer_body(1, 5.0, timeout=200_000)  # 200 ms, while the slow one runs for ~2 s
    reply = post(server, "single", doc)
    assert reply.status_code == 504, reply.text
    assert "deadline" in reply.json()["error"]
    assert not slow.done()  # answered at its deadline, not after the slow request
    assert_rows(slow.result(), slow_x)
    after = statistics(server, "single")
    assert after["execution_count"] - before["execution_count"] == 1  # the slow one only
    assert (
        after["inference_stats"]["fail"]["count"] - before["inference_stats"]["fail"]["count"] == 1
    )


def test_a_timeout_header_that_passes_in_the_queue_is_a_504_and_never_runs(
    server: RunningServer, slow_rounds: int, background: ThreadPoolExecutor
) -> None:
    before = statistics(server, "single")
    slow, slow_x = start_slow(background, server, slow_rounds)
    doc, _ = infer_body(1, 5.0)
    with httpx.Client(base_url=server.http_url, timeout=60) as http:
        reply = http.post("/v2/models/single/infer", json=doc, headers={"timeout": "200000"})
    assert reply.status_code == 504, reply.text
    assert not slow.done()
    assert_rows(slow.result(), slow_x)
    after = statistics(server, "single")
    assert after["execution_count"] - before["execution_count"] == 1  # the slow one only


def test_v1_takes_its_deadline_from_the_timeout_header(server: RunningServer) -> None:
    before = statistics(server, "single")
    body = {"instances": [{"x": [1.0, 2.0, 3.0, 4.0], "n": [0]}]}
    with httpx.Client(base_url=server.http_url, timeout=60) as http:
        reply = http.post("/v1/models/single:predict", json=body, headers={"timeout": "1"})
        assert reply.status_code == 504, reply.text
        assert "deadline" in reply.json()["error"]
        assert statistics(server, "single")["execution_count"] == before["execution_count"]
        reply = http.post("/v1/models/single:predict", json=body, headers={"timeout": "9000000"})
        assert reply.status_code == 200, reply.text
        assert reply.json()["predictions"] == [[1.0, 2.0, 3.0, 4.0]]


@pytest.mark.parametrize(
    ("header", "value"), [("timeout", "soon"), ("timeout", "-5"), ("priority", "high")]
)
def test_a_bad_schedule_header_is_a_400_naming_it(
    server: RunningServer, header: str, value: str
) -> None:
    doc, _ = infer_body(1, 0.0)
    with httpx.Client(base_url=server.http_url, timeout=60) as http:
        for reply in (
            http.post("/v2/models/single/infer", json=doc, headers={header: value}),
            http.post(
                "/v1/models/single:predict",
                json={"instances": [{"x": [1.0, 2.0, 3.0, 4.0], "n": [0]}]},
                headers={header: value},
            ),
        ):
            assert reply.status_code == 400, reply.text
            assert f"header {header!r}" in reply.json()["error"]


def test_a_full_queue_is_a_429_with_retry_after_and_loses_nothing(
    server: RunningServer, slow_rounds: int, background: ThreadPoolExecutor
) -> None:
    slow, slow_x = start_slow(background, server, slow_rounds)
    queued = []
    for index in range(2):  # max_queue_size: 2
        doc, x = infer_body(1, 10.0 * (index + 1))
        queued.append((background.submit(post, server, "single", doc), x))
    wait_for_workload(server, "single", lambda now: now.waiting >= 2)
    doc, _ = infer_body(1, 99.0)
    reply = post(server, "single", doc)
    assert reply.status_code == 429, reply.text
    assert int(reply.headers["Retry-After"]) >= 1
    assert "max_queue_size" in reply.json()["error"]
    assert_rows(slow.result(), slow_x)
    for future, x in queued:
        assert_rows(future.result(), x)


def test_adaptive_mode_refuses_what_would_miss_its_target_with_a_429(
    server: RunningServer, slow_rounds: int, background: ThreadPoolExecutor
) -> None:
    # A request on an idle model always runs; this one keeps the model busy for ~2 s, four
    # times the 500 ms target.
    doc, slow_x = infer_body(1, -100.0, slow_rounds)
    slow = background.submit(post, server, "adaptive", doc)
    wait_for_workload(server, "adaptive", lambda now: now.running >= 1)
    doc, x = infer_body(1, 7.0)
    reply = post(server, "adaptive", doc)
    assert reply.status_code == 429, reply.text
    assert int(reply.headers["Retry-After"]) >= 1
    assert "latency_slo_ms 500" in reply.json()["error"]
    assert not slow.done()  # refused at once, not after the slow request
    assert_rows(slow.result(), slow_x)
    assert_rows(post(server, "adaptive", doc), x)  # idle again: it runs


def test_grpc_deadline_exceeded_while_queued_never_runs(
    server: RunningServer, slow_rounds: int, background: ThreadPoolExecutor
) -> None:
    before = statistics(server, "single")
    slow, slow_x = start_slow(background, server, slow_rounds)
    x = np.zeros((1, WIDTH), np.float32)
    inputs = [triton.InferInput("x", [1, WIDTH], "FP32"), triton.InferInput("n", [1, 1], "INT64")]
    inputs[0].set_data_from_numpy(x)
    inputs[1].set_data_from_numpy(np.zeros((1, 1), np.int64))
    with (
        triton.InferenceServerClient(server.grpc_address) as client,
        pytest.raises(InferenceServerException) as failure,
    ):
        client.infer("single", inputs, client_timeout=0.3)
    assert failure.value.status() == "StatusCode.DEADLINE_EXCEEDED"
    assert_rows(slow.result(), slow_x)
    after = statistics(server, "single")
    assert after["execution_count"] - before["execution_count"] == 1  # the slow one only


def test_model_config_reports_the_batch_size(server: RunningServer) -> None:
    reply = httpx.get(f"{server.http_url}/v2/models/mixed/config", timeout=10)
    assert reply.status_code == 200
    config = reply.json()
    assert config["max_batch_size"] == 32
    assert [entry["dims"] for entry in config["input"]] == [[WIDTH], [1]]


def test_model_config_reports_batching_and_instances_over_http(server: RunningServer) -> None:
    with httpclient.InferenceServerClient(server.http_address) as client:
        single = client.get_model_config("single")
        adaptive = client.get_model_config("adaptive")
    assert single["max_batch_size"] == 8
    assert single["instance_group"] == [{"name": "single_0", "kind": "KIND_CPU", "count": 1}]
    assert single["dynamic_batching"] == {
        "preferred_batch_size": [],
        "max_queue_delay_microseconds": 0,
        "priority_levels": 0,
        "default_priority_level": 0,
        "default_queue_policy": {"max_queue_size": 2},
    }
    assert single["parameters"] == {"serval.dynamic_batching.mode": {"string_value": "fixed"}}
    assert adaptive["parameters"] == {
        "serval.dynamic_batching.mode": {"string_value": "adaptive"},
        "serval.dynamic_batching.latency_slo_ms": {"string_value": "500.0"},
    }


def test_model_config_reports_batching_and_instances_over_grpc(server: RunningServer) -> None:
    with triton.InferenceServerClient(server.grpc_address) as client:
        config = client.get_model_config("single", as_json=True)["config"]
        message = client.get_model_config("mixed").config
    # tritonclient prints protobuf's JSON: 64-bit integers as strings, default values left out.
    assert config["max_batch_size"] == 8
    assert config["instance_group"] == [{"name": "single_0", "kind": "KIND_CPU", "count": 1}]
    assert config["dynamic_batching"] == {"default_queue_policy": {"max_queue_size": 2}}
    assert [entry["dims"] for entry in config["input"]] == [[str(WIDTH)], ["1"]]
    assert message.WhichOneof("scheduling_choice") == "dynamic_batching"
    assert [(g.name, g.count) for g in message.instance_group] == [("mixed_0", 1)]
