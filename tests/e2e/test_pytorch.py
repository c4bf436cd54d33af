"""PyTorch models served by the real server: a TorchScript ``model.pt`` and a ``torch.export``
``model.pt2`` built here answer what torch answers in-process, over V2 JSON, V2 binary, gRPC
and TF Serving's V1 REST; concurrent clients are batched; bad input and unsafe or undeclared
files are refused with the reason."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from serval.testing import RunningServer, run_server

pytestmark = pytest.mark.e2e

torch = pytest.importorskip("torch")
tritonhttp = pytest.importorskip("tritonclient.http")
tritongrpc = pytest.importorskip("tritonclient.grpc")

from tests.runtimes import torch_models  # noqa: E402 - after the importorskip
from tests.runtimes.builders import version_folder  # noqa: E402

MODELS = ("scripted", "exported")
OUTPUTS = ("logits", "label")
BATCHED = "max_batch_size: 16\ndynamic_batching: {max_queue_delay_us: 2000}\n"
CLIENTS = 16
ROUNDS = 5


@dataclass
class Served:
    server: RunningServer
    expected: dict[str, torch_models.Expected]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    repo = tmp_path_factory.mktemp("repo")
    expected = {
        "scripted": torch_models.scripted(repo, "scripted"),
        "exported": torch_models.exported(repo, "exported"),
        "batched": torch_models.exported(repo, "batched", BATCHED),
        "trusted": torch_models.pickled(
            repo, "trusted", yaml=torch_models.DECLARED + "runtime_options: {trust_pickle: true}\n"
        ),
    }
    torch_models.pickled(repo, "untrusted", file="model.pt")
    torch_models.scripted(repo, "undeclared", yaml="max_batch_size: 8\n")
    torch.save(torch_models.module().state_dict(), version_folder(repo, "weights") / "model.pt")
    (repo / "weights" / "model.yaml").write_text(torch_models.DECLARED)
    with run_server(repo, "--strict-readiness", "false") as server:
        yield Served(server, expected)


@pytest.fixture(scope="module")
def http(served: Served) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served.server.http_url, timeout=30) as client:
        yield client


def rows(count: int = 5, seed: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(count, 4)).astype(np.float32)


def assert_answers(got: dict[str, Any], want: dict[str, np.ndarray]) -> None:
    np.testing.assert_allclose(np.asarray(got["logits"]), want["logits"], rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(got["label"]), want["label"])


@pytest.mark.parametrize("model", [*MODELS, "trusted"])
def test_v2_json(served: Served, http: httpx.Client, model: str) -> None:
    x = rows()
    body = {"inputs": [{"name": "input", "datatype": "FP32", "shape": list(x.shape)}]}
    body["inputs"][0]["data"] = x.ravel().tolist()
    reply = http.post(f"/v2/models/{model}/infer", json=body)
    assert reply.status_code == 200, reply.text
    outputs = {o["name"]: o for o in reply.json()["outputs"]}
    assert (outputs["logits"]["datatype"], outputs["logits"]["shape"]) == ("FP32", [5, 3])
    assert (outputs["label"]["datatype"], outputs["label"]["shape"]) == ("INT64", [5])
    got = {name: np.reshape(o["data"], o["shape"]) for name, o in outputs.items()}
    assert_answers(got, served.expected[model](x))


@pytest.mark.parametrize("model", MODELS)
def test_v2_binary(served: Served, model: str) -> None:
    x = rows(seed=4)
    with tritonhttp.InferenceServerClient(served.server.http_address) as client:
        tensor = tritonhttp.InferInput("input", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x, binary_data=True)
        wanted = [tritonhttp.InferRequestedOutput(n, binary_data=True) for n in OUTPUTS]
        result = client.infer(model, [tensor], outputs=wanted)
    assert_answers({n: result.as_numpy(n) for n in OUTPUTS}, served.expected[model](x))


@pytest.mark.parametrize("model", MODELS)
def test_grpc(served: Served, model: str) -> None:
    x = rows(seed=5)
    with tritongrpc.InferenceServerClient(served.server.grpc_address) as client:
        tensor = tritongrpc.InferInput("input", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x)
        result = client.infer(model, [tensor])
        metadata = client.get_model_metadata(model, as_json=True)
    assert_answers({n: result.as_numpy(n) for n in OUTPUTS}, served.expected[model](x))
    assert [(i["name"], i["datatype"], i["shape"]) for i in metadata["inputs"]] == [
        ("input", "FP32", ["-1", "4"])
    ]


@pytest.mark.parametrize("model", MODELS)
def test_v1_rest(served: Served, http: httpx.Client, model: str) -> None:
    x = rows(count=3, seed=6)
    want = served.expected[model](x)
    columns = http.post(f"/v1/models/{model}:predict", json={"inputs": {"input": x.tolist()}})
    assert columns.status_code == 200, columns.text
    assert_answers(columns.json()["outputs"], want)
    instances = http.post(f"/v1/models/{model}:predict", json={"instances": x.tolist()})
    assert instances.status_code == 200, instances.text
    predictions = instances.json()["predictions"]
    assert_answers({n: [p[n] for p in predictions] for n in OUTPUTS}, want)
    body = {"signature_name": "serving_default", "instances": x.tolist()}
    assert http.post(f"/v1/models/{model}:predict", json=body).status_code == 200
    body["signature_name"] = "classify"
    other = http.post(f"/v1/models/{model}:predict", json=body)
    assert other.status_code == 400
    assert "no signature 'classify'" in other.text


def test_concurrent_clients_are_batched_and_get_their_own_rows(served: Served) -> None:
    expected = served.expected["batched"]

    async def client(http: httpx.AsyncClient, index: int) -> None:
        for round_ in range(ROUNDS):
            x = rows(count=1 + (index + round_) % 3, seed=100 * index + round_)
            body = {"inputs": [{"name": "input", "datatype": "FP32", "shape": list(x.shape)}]}
            body["inputs"][0]["data"] = x.ravel().tolist()
            reply = await http.post("/v2/models/batched/infer", json=body)
            assert reply.status_code == 200, reply.text
            outputs = {
                o["name"]: np.reshape(o["data"], o["shape"]) for o in reply.json()["outputs"]
            }
            assert_answers(outputs, expected(x))

    async def main() -> None:
        limits = httpx.Limits(max_connections=CLIENTS)
        async with httpx.AsyncClient(
            base_url=served.server.http_url, timeout=60, limits=limits
        ) as http:
            await asyncio.gather(*(client(http, i) for i in range(CLIENTS)))

    asyncio.run(main())
    reply = httpx.get(f"{served.server.http_url}/v2/models/batched/stats", timeout=10)
    stats = reply.json()["model_stats"][0]
    assert stats["inference_stats"]["success"]["count"] == CLIENTS * ROUNDS
    assert stats["execution_count"] < CLIENTS * ROUNDS
    assert max(entry["batch_size"] for entry in stats["batch_stats"]) > 1


@pytest.mark.parametrize("model", MODELS)
def test_wrong_datatype_and_shape_are_a_400_naming_the_tensor(
    http: httpx.Client, model: str
) -> None:
    wrong_type = {"inputs": [{"name": "input", "datatype": "INT64", "shape": [1, 4]}]}
    wrong_type["inputs"][0]["data"] = [1, 2, 3, 4]
    reply = http.post(f"/v2/models/{model}/infer", json=wrong_type)
    assert reply.status_code == 400
    assert "input" in reply.json()["error"] and "FP32" in reply.json()["error"]
    wrong_shape = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 5]}]}
    wrong_shape["inputs"][0]["data"] = [0.0] * 5
    reply = http.post(f"/v2/models/{model}/infer", json=wrong_shape)
    assert reply.status_code == 400
    assert "input" in reply.json()["error"] and "expected shape" in reply.json()["error"]


def reason(http: httpx.Client, model: str) -> str:
    index = http.post("/v2/repository/index").json()
    row = next(r for r in index if r["name"] == model)
    assert row["state"] == "UNAVAILABLE"
    text: str = row["reason"]
    return text


def test_a_pickle_is_refused_without_trust(http: httpx.Client) -> None:
    text = reason(http, "untrusted")
    assert "refusing to load model.pt" in text
    assert "runtime_options.trust_pickle: true" in text
    assert "pickle-safety" in text


def test_a_state_dict_is_refused_as_weights_only(http: httpx.Client) -> None:
    assert "holds only weights" in reason(http, "weights")


def test_torchscript_without_declared_tensors_names_the_model_yaml_fields(
    http: httpx.Client,
) -> None:
    text = reason(http, "undeclared")
    assert "declare inputs and outputs" in text
    assert str(Path("undeclared") / "model.yaml") in text
