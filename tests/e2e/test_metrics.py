"""GET /metrics of the real server after a known sequence of requests: the counters equal the
numbers sent, histograms count the successes, monitored inputs and outputs show the planted
NaNs and out-of-range values, and client-chosen model names never become label values."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http
from prometheus_client.parser import text_string_to_metric_families

from serval.core.tensors.datatypes import DataType
from serval.testing import RunningServer, run_server
from tests.onnx_models import identity, linear, write_model

pytestmark = pytest.mark.e2e

UNKNOWN = ["ghost-model", "x" * 40, "secret-customer-name"]
JSON_BODY = {"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [1.0, 2.0]}]}
MONITORING = """\
inputs:
  - name: x
    range: [0, 10]
    monitor: true
outputs:
  - name: y
    range: [-100, 100]
    monitor: true
"""
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _repository(root: Path) -> Path:
    write_model(root, "linear", 1, linear([1.0, 2.0], 0.0))
    (root / "linear" / "model.yaml").write_text(MONITORING)
    write_model(root, "labels", 1, identity(DataType.INT64))
    (root / "labels" / "model.yaml").write_text("outputs:\n  - name: OUTPUT0\n    classes: true\n")
    return root


def _binary_infer(client: triton_http.InferenceServerClient, x: np.ndarray) -> None:
    tensor = triton_http.InferInput("x", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x.astype(np.float32), binary_data=True)  # NaN travels in binary
    client.infer("linear", [tensor])


@pytest.fixture(scope="module")
def scraped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Samples, str]]:
    with run_server(_repository(tmp_path_factory.mktemp("repository"))) as server:
        _send_known_sequence(server)
        text = httpx.get(f"{server.http_url}/metrics").text
        found = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }
        yield found, text


def _send_known_sequence(server: RunningServer) -> None:
    with httpx.Client(base_url=server.http_url) as http:
        for _ in range(4):  # 4 successes, REST V2 JSON
            assert http.post("/v2/models/linear/infer", json=JSON_BODY).status_code == 200
        for _ in range(2):  # 2 client errors after the version resolved (wrong shape)
            bad = {
                "inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]
            }
            assert http.post("/v2/models/linear/infer", json=bad).status_code == 400
        # 1 client error before the version resolved (not JSON)
        assert http.post("/v2/models/linear/infer", content=b"{oops").status_code == 400
        for name in UNKNOWN:  # 3 unknown models, V2 and V1
            assert http.post(f"/v2/models/{name}/infer", json=JSON_BODY).status_code == 404
        assert (
            http.post(f"/v1/models/{UNKNOWN[0]}:predict", json={"instances": [[1, 2]]}).status_code
            == 404
        )
        for _ in range(3):  # 3 successes, REST V1
            reply = http.post("/v1/models/linear:predict", json={"instances": [[1, 2]]})
            assert reply.status_code == 200
        labels = {
            "inputs": [
                {"name": "INPUT0", "shape": [1, 4], "datatype": "INT64", "data": [0, 1, 1, 2]}
            ]
        }
        assert http.post("/v2/models/labels/infer", json=labels).status_code == 200
    with triton_http.InferenceServerClient(server.http_address) as client:
        # Binary tensors: 2 more successes, with planted NaN and out-of-range values.
        _binary_infer(client, np.array([[1.0, 2.0], [np.nan, 3.0], [20.0, -1.0]]))
        _binary_infer(client, np.array([[100.0, 100.0]]))  # y = 300: above the output's range
    with triton_grpc.InferenceServerClient(server.grpc_address) as client:
        for _ in range(2):  # 2 successes over gRPC
            tensor = triton_grpc.InferInput("x", [1, 2], "FP32")
            tensor.set_data_from_numpy(np.array([[1.0, 2.0]], np.float32))
            client.infer("linear", [tensor])


def value(found: Samples, name: str, **labels: str) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


def test_requests_by_outcome(scraped: tuple[Samples, str]) -> None:
    found, _ = scraped
    total = "serval_requests_total"
    linear_v2 = {"model": "linear", "version": "1", "protocol": "rest_v2"}
    assert value(found, total, outcome="success", **linear_v2) == 6
    assert value(found, total, outcome="client_error", **linear_v2) == 2
    assert (
        value(found, total, model="linear", version="", protocol="rest_v2", outcome="client_error")
        == 1
    )
    assert (
        value(found, total, model="", version="", protocol="rest_v2", outcome="unknown_model") == 3
    )
    assert (
        value(found, total, model="", version="", protocol="rest_v1", outcome="unknown_model") == 1
    )
    assert (
        value(found, total, model="linear", version="1", protocol="rest_v1", outcome="success") == 3
    )
    assert value(found, total, model="linear", version="1", protocol="grpc", outcome="success") == 2
    assert (
        value(found, total, model="labels", version="1", protocol="rest_v2", outcome="success") == 1
    )
    every = sum(v for (name, _), v in found.items() if name == total)
    assert every == 6 + 2 + 1 + 3 + 1 + 3 + 2 + 1


def test_histograms_count_the_successes(scraped: tuple[Samples, str]) -> None:
    found, _ = scraped
    linear_v2 = {"model": "linear", "version": "1", "protocol": "rest_v2"}
    for name in ("duration", "decode", "encode"):
        assert value(found, f"serval_request_{name}_seconds_count", **linear_v2) == 6
        assert value(found, f"serval_request_{name}_seconds_bucket", le="+Inf", **linear_v2) == 6
    assert (
        value(
            found,
            "serval_request_duration_seconds_count",
            model="linear",
            version="1",
            protocol="grpc",
        )
        == 2
    )
    for name in ("queue_seconds", "compute_seconds", "batch_size"):
        assert (
            value(found, f"serval_inference_{name}_count", model="linear", version="1") == 6 + 3 + 2
        )
    # Batch size counts rows: every request had one row but the binary one with three.
    batch = "serval_inference_batch_size_bucket"
    assert value(found, batch, model="linear", version="1", le="1.0") == 10
    assert value(found, batch, model="linear", version="1", le="4.0") == 11


def test_unknown_model_names_are_never_label_values(scraped: tuple[Samples, str]) -> None:
    found, text = scraped
    for name in UNKNOWN:
        assert name not in text
    models = {dict(labels).get("model") for _, labels in found}
    assert models <= {None, "", "linear", "labels"}


def test_model_state_and_gauges(scraped: tuple[Samples, str]) -> None:
    found, _ = scraped
    assert value(found, "serval_model_state", model="linear", version="1", state="AVAILABLE") == 1
    assert value(found, "serval_model_state", model="linear", version="1", state="LOADING") == 0
    assert value(found, "serval_model_load_duration_seconds", model="linear", version="1") > 0
    assert value(found, "serval_inflight_requests", model="linear", version="1") == 0
    assert ("serval_inference_pool_queue_depth", ()) in found
    assert value(found, "process_resident_memory_bytes") > 0


def test_input_and_output_monitoring(scraped: tuple[Samples, str]) -> None:
    found, _ = scraped
    x = {"model": "linear", "version": "1", "input": "x"}
    # x values: 9 successes of [1, 2] (V2 JSON, V1, gRPC) + [1, 2, nan, 3, 20, -1] + [100, 100]
    assert value(found, "serval_input_values_total", **x) == 9 * 2 + 5 + 2
    assert value(found, "serval_input_missing_total", **x) == 1
    assert value(found, "serval_input_out_of_range_total", side="below", **x) == 1
    assert value(found, "serval_input_out_of_range_total", side="above", **x) == 1 + 2
    assert value(found, "serval_input_value_min", **x) == -1.0
    assert value(found, "serval_input_value_max", **x) == 100.0
    assert value(found, "serval_input_value_mean", **x) == pytest.approx((9 * 3 + 25 + 200) / 25)
    y = {"model": "linear", "version": "1", "output": "y"}
    # y = x1 + 2 x2: 9 x 5, then 5, NaN, 18, then 300
    assert value(found, "serval_output_values_total", **y) == 9 + 2 + 1
    assert value(found, "serval_output_missing_total", **y) == 1
    assert value(found, "serval_output_out_of_range_total", side="above", **y) == 1
    assert value(found, "serval_output_value_max", **y) == 300.0
    label = {"model": "labels", "version": "1", "output": "OUTPUT0"}
    classes = {c: value(found, "serval_output_class_total", **label, **{"class": c}) for c in "012"}
    assert classes == {"0": 1, "1": 2, "2": 1}


def test_metrics_can_be_turned_off(tmp_path: Path) -> None:
    write_model(tmp_path, "linear", 1, linear([1.0], 0.0))
    with run_server(tmp_path, "--no-metrics", grpc=False) as server:
        assert httpx.get(f"{server.http_url}/metrics").status_code == 404
