"""``serval convert`` output served by the real server: a Keras SavedModel and a torch.export
program, converted to ONNX as their next versions, answer what TensorFlow and torch answer
in-process, over V2 JSON, gRPC and TF Serving's V1 REST (``signature_name: serving_default``
included, as TF Serving clients send it)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
import pytest

from serval.testing import RunningServer, run_server

pytestmark = pytest.mark.e2e

pytest.importorskip("tensorflow")
pytest.importorskip("tf2onnx")
pytest.importorskip("torch")
pytest.importorskip("onnxscript")
tritongrpc = pytest.importorskip("tritonclient.grpc")

from serval.tools.convert import convert_version  # noqa: E402 - after the importorskip
from tests.runtimes import torch_models  # noqa: E402
from tests.tools import tf_sources  # noqa: E402

# model -> (input name, output names)
MODELS = {"keras": ("features", ("scores", "best")), "torch": ("input", ("logits", "label"))}
Answers = Callable[[np.ndarray], dict[str, np.ndarray]]


@dataclass
class Served:
    server: RunningServer
    expected: dict[str, Answers]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    repo = tmp_path_factory.mktemp("repo")
    expected: dict[str, Answers] = {
        "keras": tf_sources.single_signature(repo, "keras"),
        "torch": torch_models.exported(repo, "torch"),
    }
    for name in MODELS:
        assert convert_version(repo / name).written == repo / name / "2" / "model.onnx"
    with run_server(repo) as server:
        yield Served(server, expected)


def rows(count: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(count, 4)).astype(np.float32)


def assert_answers(got: dict[str, Any], want: dict[str, np.ndarray]) -> None:
    assert set(got) == set(want)
    for name, array in want.items():
        if array.dtype.kind == "f":
            np.testing.assert_allclose(np.asarray(got[name]), array, rtol=1e-5, atol=1e-6)
        else:
            np.testing.assert_array_equal(np.asarray(got[name]), array)


@pytest.mark.parametrize("model", sorted(MODELS))
def test_the_onnx_version_serves_the_frameworks_answers_over_v2_json(
    served: Served, model: str
) -> None:
    name, _ = MODELS[model]
    x = rows(5, seed=1)
    body = {"inputs": [{"name": name, "datatype": "FP32", "shape": [5, 4], "data": x.tolist()}]}
    with httpx.Client(base_url=served.server.http_url, timeout=30) as http:
        metadata = http.get(f"/v2/models/{model}").json()
        reply = http.post(f"/v2/models/{model}/infer", json=body)
    assert (metadata["platform"], metadata["versions"]) == ("onnxruntime_onnx", ["2"])
    assert reply.status_code == 200, reply.text
    assert reply.json()["model_version"] == "2"
    got = {o["name"]: np.reshape(o["data"], o["shape"]) for o in reply.json()["outputs"]}
    assert_answers(got, served.expected[model](x))


@pytest.mark.parametrize("model", sorted(MODELS))
def test_grpc(served: Served, model: str) -> None:
    name, outputs = MODELS[model]
    x = rows(3, seed=2)
    with tritongrpc.InferenceServerClient(served.server.grpc_address) as client:
        tensor = tritongrpc.InferInput(name, list(x.shape), "FP32")
        tensor.set_data_from_numpy(x)
        result = client.infer(model, [tensor])
    assert_answers({n: result.as_numpy(n) for n in outputs}, served.expected[model](x))


@pytest.mark.parametrize("model", sorted(MODELS))
def test_v1_rest_with_tf_servings_default_signature(served: Served, model: str) -> None:
    name, _ = MODELS[model]
    x = rows(4, seed=3)
    body = {"signature_name": "serving_default", "inputs": {name: x.tolist()}}
    with httpx.Client(base_url=served.server.http_url, timeout=30) as http:
        reply = http.post(f"/v1/models/{model}:predict", json=body)
    assert reply.status_code == 200, reply.text
    assert_answers(reply.json()["outputs"], served.expected[model](x))
