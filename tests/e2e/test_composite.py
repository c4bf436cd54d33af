"""Composite models (pipeline, cascade, ensemble) against the real server: the answers equal
the models composed in-process, over V2 REST (JSON and binary), V1 REST and gRPC; metadata,
statistics, the repository index and metrics; bad composite specs are load errors naming the
step and the tensor."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http

from serval.testing import RunningServer, run_server
from tests.onnx_models import affine, classifier, write_model

pytestmark = pytest.mark.e2e

Array = np.ndarray[Any, Any]

PIPELINE = """
pipeline:
  steps:
    - name: scale
      model: scaler
      inputs: {x: inputs.raw}
    - name: clf
      model: classifier
      inputs: {x: scale.y}
  outputs: {probabilities: clf.probabilities, label: clf.label}
"""
CASCADE = """
cascade:
  - model: classifier
    accept: {output: probabilities, min_confidence: 0.9}
  - model: large
"""
MEAN = "ensemble: {models: [classifier, large, biased], combine: mean, output: probabilities}\n"
VOTE = "ensemble: {models: [classifier, large, biased], combine: vote, output: label}\n"
BAD = {
    "cycle": """
pipeline:
  steps:
    - {name: a, model: scaler, inputs: {x: b.y}}
    - {name: b, model: scaler, inputs: {x: a.y}}
  outputs: {y: b.y}
""",
    "ghost": """
pipeline:
  steps:
    - {name: first, model: scaler, inputs: {x: inputs.x}}
    - {name: second, model: nowhere, inputs: {x: first.y}}
  outputs: {y: second.y}
""",
    "mismatch": """
pipeline:
  steps:
    - {name: clf, model: classifier, inputs: {x: inputs.x}}
    - {name: again, model: classifier, inputs: {x: clf.label}}
  outputs: {label: again.label}
""",
}

ROWS = np.array([[0.1, 0.3], [3.0, -2.0], [0.5, 0.4], [-4.0, 4.0], [1.0, 1.2]], np.float32)


def softmax(z: Array) -> Array:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def scaler(x: Array) -> Array:
    return x * 2.0 + np.array([1.0, -1.0], np.float32)


def large(x: Array) -> Array:
    return softmax(x * 0.5 + np.array([0.0, 0.3], np.float32))


def biased(x: Array) -> Array:
    return softmax(x + np.array([2.0, 0.0], np.float32))


def composite(repo: Path, name: str, text: str) -> None:
    (repo / name).mkdir(parents=True, exist_ok=True)
    (repo / name / "model.yaml").write_text(text)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    repo = tmp_path_factory.mktemp("repo")
    write_model(repo, "scaler", 1, affine(2.0, [1.0, -1.0]))
    write_model(repo, "classifier", 1, classifier())
    write_model(repo, "large", 1, affine(0.5, [0.0, 0.3], softmax=True))
    write_model(repo, "biased", 1, affine(1.0, [2.0, 0.0], softmax=True))
    composite(repo, "p", PIPELINE)
    composite(repo, "c", CASCADE)
    composite(repo, "mean", MEAN)
    composite(repo, "vote", VOTE)
    for name, text in BAD.items():
        composite(repo, name, text)
    with run_server(repo, "--strict-readiness", "false") as running:
        yield running


@pytest.fixture
def http(server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.http_url, timeout=10) as client:
        yield client


def v2_json(http: httpx.Client, model: str, x: Array, name: str = "x") -> dict[str, Any]:
    body = {
        "inputs": [
            {"name": name, "datatype": "FP32", "shape": list(x.shape), "data": x.ravel().tolist()}
        ]
    }
    response = http.post(f"/v2/models/{model}/infer", json=body)
    assert response.status_code == 200, response.text
    return {out["name"]: out["data"] for out in response.json()["outputs"]}


def test_a_pipeline_equals_its_models_composed_over_every_protocol(
    server: RunningServer, http: httpx.Client
) -> None:
    expected = softmax(scaler(ROWS))
    labels = expected.argmax(axis=1)
    # V2 REST, JSON.
    out = v2_json(http, "p", ROWS, "raw")
    np.testing.assert_allclose(np.reshape(out["probabilities"], (-1, 2)), expected, rtol=1e-5)
    assert out["label"] == labels.tolist()
    # V2 REST, binary tensors.
    client = triton_http.InferenceServerClient(server.http_address)
    raw = triton_http.InferInput("raw", list(ROWS.shape), "FP32")
    raw.set_data_from_numpy(ROWS, binary_data=True)
    wanted = [
        triton_http.InferRequestedOutput(n, binary_data=True) for n in ("probabilities", "label")
    ]
    result = client.infer("p", [raw], outputs=wanted)
    np.testing.assert_allclose(result.as_numpy("probabilities"), expected, rtol=1e-5)
    np.testing.assert_array_equal(result.as_numpy("label"), labels)
    # gRPC.
    grpc_client = triton_grpc.InferenceServerClient(server.grpc_address)
    raw_g = triton_grpc.InferInput("raw", list(ROWS.shape), "FP32")
    raw_g.set_data_from_numpy(ROWS)
    assert grpc_client.is_model_ready("p")
    grpc_meta = grpc_client.get_model_metadata("p", as_json=True)
    assert grpc_meta["platform"] == "serval_pipeline"
    assert [i["name"] for i in grpc_meta["inputs"]] == ["raw"]
    result_g = grpc_client.infer("p", [raw_g])
    np.testing.assert_allclose(result_g.as_numpy("probabilities"), expected, rtol=1e-5)
    np.testing.assert_array_equal(result_g.as_numpy("label"), labels)
    # V1 REST, row format.
    response = http.post("/v1/models/p:predict", json={"instances": ROWS.tolist()})
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    assert [row["label"] for row in predictions] == labels.tolist()
    np.testing.assert_allclose([row["probabilities"] for row in predictions], expected, rtol=1e-5)


def test_a_composite_has_metadata_statistics_and_an_index_row(
    server: RunningServer, http: httpx.Client
) -> None:
    meta = http.get("/v2/models/p").json()
    assert meta["platform"] == "serval_pipeline"
    assert meta["versions"] == ["1"]
    assert meta["inputs"] == [{"name": "raw", "datatype": "FP32", "shape": [-1, 2]}]
    assert [o["name"] for o in meta["outputs"]] == ["probabilities", "label"]
    assert http.get("/v2/models/p/ready").status_code == 200
    config = http.get("/v2/models/p/config")
    assert config.status_code == 200, config.text
    assert config.json()["platform"] == "serval_pipeline"
    v1_meta = http.get("/v1/models/c/metadata")
    assert v1_meta.status_code == 200, v1_meta.text
    assert "served_by" in v1_meta.text
    v1 = http.get("/v1/models/c").json()
    assert v1["model_version_status"][0]["state"] == "AVAILABLE"
    v2_json(http, "p", ROWS, "raw")
    stats = http.get("/v2/models/p/stats").json()["model_stats"][0]["inference_stats"]
    assert stats["success"]["count"] >= 1
    # The step models count the calls the pipeline made.
    scaler_stats = http.get("/v2/models/scaler/stats").json()["model_stats"][0]
    assert scaler_stats["inference_count"] >= len(ROWS)
    rows = {row["name"]: row for row in http.post("/v2/repository/index", json={}).json()}
    assert rows["p"]["state"] == "READY"
    assert rows["c"]["state"] == "READY"


def test_a_cascade_answers_each_row_from_the_stage_that_accepts_it(
    server: RunningServer, http: httpx.Client
) -> None:
    out = v2_json(http, "c", ROWS)
    small = softmax(ROWS)
    accepted = small.max(axis=1) >= 0.9
    expected = np.where(accepted[:, None], small, large(ROWS))
    np.testing.assert_allclose(np.reshape(out["probabilities"], (-1, 2)), expected, rtol=1e-5)
    assert out["label"] == expected.argmax(axis=1).tolist()
    assert out["served_by"] == ["classifier" if a else "large" for a in accepted]
    assert 0 < accepted.sum() < len(ROWS)  # both stages answer some rows
    # gRPC and V1 carry served_by too (BYTES: raw bytes, text).
    grpc_client = triton_grpc.InferenceServerClient(server.grpc_address)
    x = triton_grpc.InferInput("x", list(ROWS.shape), "FP32")
    x.set_data_from_numpy(ROWS)
    served_by = grpc_client.infer("c", [x]).as_numpy("served_by")
    assert served_by.tolist() == [b"classifier" if a else b"large" for a in accepted]
    v1 = http.post("/v1/models/c:predict", json={"instances": ROWS.tolist()}).json()
    assert [row["served_by"] for row in v1["predictions"]] == out["served_by"]
    metrics = http.get("/metrics").text
    assert 'serval_cascade_rows_total{model="c",stage="classifier"}' in metrics
    assert 'serval_cascade_rows_total{model="c",stage="large"}' in metrics


def test_an_ensemble_equals_the_mean_and_the_vote(http: httpx.Client) -> None:
    members = [softmax(ROWS), large(ROWS), biased(ROWS)]
    out = v2_json(http, "mean", ROWS)
    np.testing.assert_allclose(
        np.reshape(out["probabilities"], (-1, 2)), np.mean(members, axis=0), rtol=1e-5
    )
    assert out["label"] == members[0].argmax(axis=1).tolist()  # other outputs: the first's
    out = v2_json(http, "vote", ROWS)
    votes = np.array([m.argmax(axis=1) for m in members])
    assert out["label"] == [int(np.bincount(votes[:, row]).argmax()) for row in range(len(ROWS))]


def test_a_request_to_a_composite_is_checked_against_its_inputs(http: httpx.Client) -> None:
    body = {"inputs": [{"name": "raw", "datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3]}]}
    response = http.post("/v2/models/p/infer", json=body)
    assert response.status_code == 400
    assert "input 'raw': expected shape [-1, 2]" in response.json()["error"]


def test_bad_composite_specs_are_load_errors_naming_step_and_tensor(http: httpx.Client) -> None:
    rows = {row["name"]: row for row in http.post("/v2/repository/index", json={}).json()}
    assert "a cycle: a -> b -> a" in rows["cycle"]["reason"]
    assert "waiting for model 'nowhere' (step 'second')" in rows["ghost"]["reason"]
    assert (
        "pipeline step 'again' (model 'classifier'): input 'x' (FP32 [-1, 2]) does not match "
        "step 'clf' output 'label' (INT64 [-1])" in rows["mismatch"]["reason"]
    )
    for name in BAD:
        assert rows[name]["state"] != "READY"
        assert http.get(f"/v2/models/{name}/ready").status_code != 200
    not_ready = http.get("/v2/models/mismatch/ready").json()["error"]
    assert "step 'clf' output 'label' (INT64 [-1])" in not_ready
    response = http.post(
        "/v2/models/ghost/infer",
        json={"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 2], "data": [1, 2]}]},
    )
    assert response.status_code == 503
    assert "nowhere" in response.json()["error"]
