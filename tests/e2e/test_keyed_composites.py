"""Keys through composite models against the real server: a keyed cascade reorders rows
internally (accepted rows from the first stage, the rest from the second), yet every key comes
back beside its own row, over V2 JSON, V2 binary, gRPC and V1 instances."""

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

CASCADE = """
keys: [request_id]
cascade:
  - model: classifier
    accept: {output: probabilities, min_confidence: 0.9}
  - model: large
"""
# Rows alternate between the stages: 0.9 confidence splits them as [small, large, ...].
ROWS = np.array(
    [[3.0, -2.0], [0.1, 0.3], [-4.0, 4.0], [0.5, 0.4], [5.0, 0.0], [1.0, 1.2]], np.float32
)
KEYS = [f"row-{i}-é" for i in range(len(ROWS))]


def softmax(z: Array) -> Array:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def expected() -> tuple[Array, list[str]]:
    """The cascade's answer per row, computed in-process, and the stage that gives it."""
    small = softmax(ROWS)
    accepted = small.max(axis=1) >= 0.9
    large = softmax(ROWS * 0.5 + np.array([0.0, 0.3], np.float32))
    served_by = ["classifier" if a else "large" for a in accepted]
    return np.where(accepted[:, None], small, large), served_by


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    repo: Path = tmp_path_factory.mktemp("repo")
    write_model(repo, "classifier", 1, classifier())
    write_model(repo, "large", 1, affine(0.5, [0.0, 0.3], softmax=True))
    (repo / "keyed").mkdir()
    (repo / "keyed" / "model.yaml").write_text(CASCADE)
    with run_server(repo) as running:
        yield running


def check(probabilities: Array, served_by: list[str], keys: list[str]) -> None:
    want, stages = expected()
    assert 0 < stages.count("classifier") < len(stages)  # both stages answer some rows
    assert keys == KEYS
    assert served_by == stages
    np.testing.assert_allclose(probabilities.reshape(-1, 2), want, rtol=1e-5)


def test_keys_come_back_row_aligned_through_a_cascade_over_v2_json(
    server: RunningServer,
) -> None:
    body = {
        "inputs": [
            {"name": "x", "datatype": "FP32", "shape": [6, 2], "data": ROWS.ravel().tolist()},
            {"name": "request_id", "datatype": "BYTES", "shape": [6], "data": KEYS},
        ]
    }
    response = httpx.post(f"{server.http_url}/v2/models/keyed/infer", json=body)
    assert response.status_code == 200, response.text
    outputs = {out["name"]: out["data"] for out in response.json()["outputs"]}
    check(np.array(outputs["probabilities"]), outputs["served_by"], outputs["request_id"])


def inputs(module: Any) -> list[Any]:
    x = module.InferInput("x", list(ROWS.shape), "FP32")
    x.set_data_from_numpy(ROWS)
    key = module.InferInput("request_id", [len(KEYS)], "BYTES")
    key.set_data_from_numpy(np.array([k.encode() for k in KEYS], dtype=np.object_))
    return [x, key]


def decoded(values: Array) -> list[str]:
    return [value.decode() for value in values.tolist()]


def test_keys_come_back_row_aligned_through_a_cascade_over_v2_binary(
    server: RunningServer,
) -> None:
    client = triton_http.InferenceServerClient(server.http_address)
    wanted = [
        triton_http.InferRequestedOutput(name, binary_data=True)
        for name in ("request_id", "probabilities", "served_by")
    ]
    result = client.infer("keyed", inputs(triton_http), outputs=wanted)
    check(
        result.as_numpy("probabilities"),
        decoded(result.as_numpy("served_by")),
        decoded(result.as_numpy("request_id")),
    )


def test_keys_come_back_row_aligned_through_a_cascade_over_grpc(server: RunningServer) -> None:
    client = triton_grpc.InferenceServerClient(server.grpc_address)
    result = client.infer("keyed", inputs(triton_grpc))
    check(
        result.as_numpy("probabilities"),
        decoded(result.as_numpy("served_by")),
        decoded(result.as_numpy("request_id")),
    )


def test_keys_come_back_row_aligned_through_a_cascade_over_v1_instances(
    server: RunningServer,
) -> None:
    instances = [{"request_id": k, "x": row} for k, row in zip(KEYS, ROWS.tolist(), strict=True)]
    response = httpx.post(
        f"{server.http_url}/v1/models/keyed:predict", json={"instances": instances}
    )
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    check(
        np.array([p["probabilities"] for p in predictions]),
        [p["served_by"] for p in predictions],
        [p["request_id"] for p in predictions],
    )
