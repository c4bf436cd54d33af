"""Keyed predictions against the real server: keys come back row-aligned on V2 JSON, V2 binary,
gRPC (tritonclient) and V1 (instances and inputs); metadata shows them; requests merged into
one batch each get their own keys; a missing key is a 400 naming it; a key named like an
input is a load error naming it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from serval.testing import RunningServer, run_server
from tests.e2e.workload import wait_for_workload
from tests.onnx_models import busy, classifier, linear, write_model

pytestmark = pytest.mark.e2e

SCORER_YAML = "keys: [request_id, {name: customer, datatype: INT64}]\n"
BATCHED_YAML = (
    "keys: [request_id]\nmax_batch_size: 32\ninstances: 1\n"
    "dynamic_batching: {max_queue_delay_us: 100000}\nruntime_options: {intra_op_threads: 1}\n"
)
WIDTH = 4
BUSY_S = 1.5  # how long the slow request keeps `batched` busy while others queue

X = np.array([[1.0, 3.0], [2.0, 0.5], [0.0, 0.0]], np.float32)
IDS = ["order-17", "order-3", "ß-unicode"]
CUSTOMERS = [70, 8, 2**40]


def expected(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The classifier's answer computed here: softmax and argmax per row."""
    exp = np.exp(x - x.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True), x.argmax(axis=1)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    repository = tmp_path_factory.mktemp("repository")
    write_model(repository, "scorer", 1, classifier(2))
    (repository / "scorer" / "model.yaml").write_text(SCORER_YAML)
    write_model(repository, "batched", 1, busy(WIDTH))
    (repository / "batched" / "model.yaml").write_text(BATCHED_YAML)
    write_model(repository, "clash", 1, linear([1.0], 0.0))
    (repository / "clash" / "model.yaml").write_text("keys: [request_id, x]\n")
    # `clash` never loads, so the server is never ready: wait for the two good models.
    with run_server(repository, wait_ready=False) as running:
        deadline = time.monotonic() + 60
        for model in ("scorer", "batched"):
            while httpx.get(f"{running.http_url}/v2/models/{model}/ready").status_code != 200:
                assert time.monotonic() < deadline, running.log()
                time.sleep(0.05)
        yield running


@pytest.fixture(scope="module")
def http(server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.http_url, timeout=30) as client:
        yield client


def v2_body(x: np.ndarray = X, ids: list[str] = IDS, customers: list[int] = CUSTOMERS) -> Any:
    return {
        "inputs": [
            {"name": "request_id", "datatype": "BYTES", "shape": [len(ids)], "data": ids},
            {"name": "x", "datatype": "FP32", "shape": list(x.shape), "data": x.ravel().tolist()},
            {"name": "customer", "datatype": "INT64", "shape": [len(customers)], "data": customers},
        ]
    }


def assert_answers(probabilities: Any, label: Any, x: np.ndarray = X) -> None:
    want_probabilities, want_label = expected(x)
    np.testing.assert_allclose(
        np.asarray(probabilities, np.float32).reshape(want_probabilities.shape),
        want_probabilities,
        rtol=1e-6,
    )
    assert np.asarray(label).reshape(-1).tolist() == want_label.tolist()


def test_v2_json_returns_keys_row_aligned_first(http: httpx.Client) -> None:
    reply = http.post("/v2/models/scorer/infer", json=v2_body())
    assert reply.status_code == 200, reply.text
    outputs = {o["name"]: o for o in reply.json()["outputs"]}
    assert list(outputs) == ["request_id", "customer", "probabilities", "label"]
    assert outputs["request_id"] == {
        "name": "request_id",
        "datatype": "BYTES",
        "shape": [3],
        "data": IDS,  # strings
    }
    assert outputs["customer"] == {
        "name": "customer",
        "datatype": "INT64",
        "shape": [3],
        "data": CUSTOMERS,  # numbers
    }
    assert_answers(outputs["probabilities"]["data"], outputs["label"]["data"])


def test_v2_requested_outputs_may_leave_keys_out_or_ask_only_for_them(http: httpx.Client) -> None:
    body = v2_body()
    body["outputs"] = [{"name": "label"}]
    reply = http.post("/v2/models/scorer/infer", json=body)
    assert [o["name"] for o in reply.json()["outputs"]] == ["label"]
    body["outputs"] = [{"name": "customer"}]
    reply = http.post("/v2/models/scorer/infer", json=body)
    assert reply.json()["outputs"] == [
        {"name": "customer", "datatype": "INT64", "shape": [3], "data": CUSTOMERS}
    ]


def test_v2_binary_returns_keys_as_binary_outputs(server: RunningServer) -> None:
    inputs = [
        httpclient.InferInput("request_id", [3], "BYTES"),
        httpclient.InferInput("x", list(X.shape), "FP32"),
        httpclient.InferInput("customer", [3], "INT64"),
    ]
    inputs[0].set_data_from_numpy(np.array(IDS, dtype=np.object_), binary_data=True)
    inputs[1].set_data_from_numpy(X, binary_data=True)
    inputs[2].set_data_from_numpy(np.array(CUSTOMERS, np.int64), binary_data=True)
    names = ("request_id", "customer", "probabilities", "label")
    outputs = [httpclient.InferRequestedOutput(n, binary_data=True) for n in names]
    with httpclient.InferenceServerClient(server.http_address) as client:
        result = client.infer("scorer", inputs, outputs=outputs)
    response = result.get_response()
    for output in response["outputs"]:
        assert "binary_data_size" in output["parameters"], output
    assert [item.decode() for item in result.as_numpy("request_id")] == IDS
    assert result.as_numpy("customer").tolist() == CUSTOMERS
    assert_answers(result.as_numpy("probabilities"), result.as_numpy("label"))


def test_grpc_returns_keys_in_raw_output_contents(server: RunningServer) -> None:
    inputs = [
        grpcclient.InferInput("request_id", [3], "BYTES"),
        grpcclient.InferInput("x", list(X.shape), "FP32"),
        grpcclient.InferInput("customer", [3], "INT64"),
    ]
    inputs[0].set_data_from_numpy(np.array([i.encode() for i in IDS], dtype=np.object_))
    inputs[1].set_data_from_numpy(X)
    inputs[2].set_data_from_numpy(np.array(CUSTOMERS, np.int64))
    with grpcclient.InferenceServerClient(server.grpc_address) as client:
        result = client.infer("scorer", inputs)
        metadata = client.get_model_metadata("scorer", as_json=True)
    response = result.get_response()
    assert [o.name for o in response.outputs] == [
        "request_id",
        "customer",
        "probabilities",
        "label",
    ]
    assert len(response.raw_output_contents) == 4
    assert [item.decode() for item in result.as_numpy("request_id")] == IDS
    assert result.as_numpy("customer").tolist() == CUSTOMERS
    assert_answers(result.as_numpy("probabilities"), result.as_numpy("label"))
    grpc_inputs = {i["name"]: i for i in metadata["inputs"]}
    assert grpc_inputs["customer"] == {"name": "customer", "datatype": "INT64", "shape": ["-1"]}


def test_grpc_refuses_a_missing_key_naming_it(server: RunningServer) -> None:
    x = grpcclient.InferInput("x", list(X.shape), "FP32")
    x.set_data_from_numpy(X)
    request_id = grpcclient.InferInput("request_id", [3], "BYTES")
    request_id.set_data_from_numpy(np.array([i.encode() for i in IDS], dtype=np.object_))
    with (
        grpcclient.InferenceServerClient(server.grpc_address) as client,
        pytest.raises(InferenceServerException) as caught,
    ):
        client.infer("scorer", [x, request_id])
    assert caught.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert "'customer'" in caught.value.message()


def test_v1_instances_answer_keyed_predictions(http: httpx.Client) -> None:
    instances = [
        {"request_id": i, "x": row.tolist(), "customer": c}
        for i, row, c in zip(IDS, X, CUSTOMERS, strict=True)
    ]
    reply = http.post("/v1/models/scorer:predict", json={"instances": instances})
    assert reply.status_code == 200, reply.text
    predictions = reply.json()["predictions"]
    assert [list(p) for p in predictions] == [
        ["request_id", "customer", "probabilities", "label"]
    ] * 3
    assert [p["request_id"] for p in predictions] == IDS
    assert [p["customer"] for p in predictions] == CUSTOMERS
    assert_answers([p["probabilities"] for p in predictions], [p["label"] for p in predictions])


def test_v1_columnar_inputs_answer_keyed_outputs(http: httpx.Client) -> None:
    inputs = {"x": X.tolist(), "request_id": IDS, "customer": CUSTOMERS}
    reply = http.post("/v1/models/scorer:predict", json={"inputs": inputs})
    assert reply.status_code == 200, reply.text
    outputs = reply.json()["outputs"]
    assert outputs["request_id"] == IDS
    assert outputs["customer"] == CUSTOMERS
    assert_answers(outputs["probabilities"], outputs["label"])


def test_metadata_shows_keys_as_inputs_and_outputs(http: httpx.Client) -> None:
    metadata = http.get("/v2/models/scorer").json()
    key_specs = [
        {"name": "request_id", "datatype": "BYTES", "shape": [-1]},
        {"name": "customer", "datatype": "INT64", "shape": [-1]},
    ]
    assert metadata["inputs"][1:] == key_specs
    assert metadata["outputs"][2:] == key_specs
    config = http.get("/v2/models/scorer/config").json()
    assert {"name": "request_id", "data_type": "TYPE_STRING", "dims": [-1]} in config["input"]
    assert {"name": "customer", "data_type": "TYPE_INT64", "dims": [-1]} in config["output"]
    v1 = http.get("/v1/models/scorer/metadata").json()
    signature = v1["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert signature["inputs"]["request_id"]["dtype"] == "DT_STRING"
    assert signature["outputs"]["customer"]["dtype"] == "DT_INT64"


def test_a_missing_key_is_a_400_naming_it(http: httpx.Client) -> None:
    body = v2_body()
    body["inputs"] = body["inputs"][:2]
    reply = http.post("/v2/models/scorer/infer", json=body)
    assert reply.status_code == 400
    assert "'customer'" in reply.json()["error"]
    instances = [{"x": [1.0, 2.0], "customer": 1}]
    reply = http.post("/v1/models/scorer:predict", json={"instances": instances})
    assert reply.status_code == 400
    assert reply.json() == {"error": "instances[0] has no input 'request_id'"}


def test_a_key_with_other_rows_is_a_400_naming_it(http: httpx.Client) -> None:
    reply = http.post("/v2/models/scorer/infer", json=v2_body(customers=[1, 2]))
    assert reply.status_code == 400
    assert reply.json() == {
        "error": "key 'customer' has 2 rows, but input 'x' has 3: a key has one value per row"
    }


def test_a_key_named_like_an_input_is_a_load_error_naming_it(http: httpx.Client) -> None:
    index = {row["name"]: row for row in http.post("/v2/repository/index").json()}
    assert index["clash"]["state"] in ("UNAVAILABLE", "LOADING")  # LOADING while it retries
    assert "key 'x' has the name of an input of the model" in index["clash"]["reason"]
    assert http.get("/v2/models/clash/ready").status_code != 200


def batched_body(rows: int, start: float, rounds: int, key: str) -> tuple[Any, np.ndarray]:
    x = (start + np.arange(rows * WIDTH, dtype=np.float32)).reshape(rows, WIDTH)
    ids = [f"{key}/{row}" for row in range(rows)]
    doc = {
        "inputs": [
            {"name": "x", "datatype": "FP32", "shape": [rows, WIDTH], "data": x.ravel().tolist()},
            {"name": "n", "datatype": "INT64", "shape": [rows, 1], "data": [rounds] * rows},
            {"name": "request_id", "datatype": "BYTES", "shape": [rows], "data": ids},
        ]
    }
    return doc, x


def post_batched(server: RunningServer, doc: Any) -> httpx.Response:
    with httpx.Client(base_url=server.http_url, timeout=60) as client:
        return client.post("/v2/models/batched/infer", json=doc)


def assert_own_rows(reply: httpx.Response, x: np.ndarray, key: str) -> None:
    assert reply.status_code == 200, reply.text
    outputs = {o["name"]: o for o in reply.json()["outputs"]}
    assert outputs["request_id"]["data"] == [f"{key}/{row}" for row in range(len(x))]
    np.testing.assert_array_equal(np.array(outputs["y"]["data"], np.float32), x.ravel())


def test_requests_merged_into_one_batch_each_get_their_own_keys(server: RunningServer) -> None:
    probe = 1000
    started = time.perf_counter()
    doc, x = batched_body(1, 0.0, probe, "probe")
    assert_own_rows(post_batched(server, doc), x, "probe")
    rounds = max(probe, int(probe * BUSY_S / (time.perf_counter() - started)))
    requests_before, executions_before = batched_counts(server)
    clients = 12
    with ThreadPoolExecutor(clients + 1) as pool:
        # One slow request holds the only instance; the others queue behind it and merge.
        slow_doc, slow_x = batched_body(1, -100.0, rounds, "slow")
        slow = pool.submit(post_batched, server, slow_doc)
        wait_for_workload(server, "batched", lambda now: now.running >= 1)
        sent = []
        for index in range(clients):
            rows = 1 + index % 3
            doc, x = batched_body(rows, 1000.0 * index, 0, f"client-{index}")
            sent.append((pool.submit(post_batched, server, doc), x, f"client-{index}"))
        wait_for_workload(server, "batched", lambda now: now.waiting >= clients)
        assert_own_rows(slow.result(), slow_x, "slow")
        for future, x, key in sent:
            assert_own_rows(future.result(), x, key)
    requests_after, executions_after = batched_counts(server)
    requests = requests_after - requests_before
    executions = executions_after - executions_before
    assert requests == clients + 1
    assert executions < requests  # the queued requests ran in fewer batches than requests


def batched_counts(server: RunningServer) -> tuple[int, int]:
    """`batched`'s successful requests and executions so far."""
    reply = httpx.get(f"{server.http_url}/v2/models/batched/stats", timeout=10)
    stats = reply.json()["model_stats"][0]
    return stats["inference_stats"]["success"]["count"], stats["execution_count"]
