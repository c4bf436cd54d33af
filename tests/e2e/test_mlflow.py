"""MLflow models through the real server: an MLflow scikit-learn model and a PythonModel saved
by the tests, answered over V2 JSON, V2 binary, gRPC and V1 REST exactly as MLflow answers
in-process; ``runtime: native``; batching with concurrent clients; models that must not load
(an untrusted pickle, a missing dependency) with the reason in the repository index."""

# ruff: noqa: PLC0415 - tritonclient's gRPC side is imported where used

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.http as httpclient

from serval.testing import RunningServer, run_server

pytestmark = pytest.mark.e2e

pytest.importorskip("mlflow")
pytest.importorskip("sklearn")

from tests.runtimes import mlflow_models  # noqa: E402 - needs mlflow

ROWS = np.random.default_rng(11).normal(size=(5, 4))
CLIENTS = 12
ROUNDS = 4


@dataclass
class Repo:
    server: RunningServer
    sklearn: Any  # the MLflow models loaded in-process by MLflow
    pyfunc: Any


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Repo]:
    root = tmp_path_factory.mktemp("repo")
    sklearn = mlflow_models.sklearn_model(root, "sk")
    mlflow_models.sklearn_model(root, "sk-native")
    (root / "sk-native" / "model.yaml").write_text("runtime: native\n")
    batching = "max_batch_size: 64\ninstances: 1\ndynamic_batching: {max_queue_delay_us: 2000}\n"
    pyfunc = mlflow_models.pyfunc_model(root, "py", batching)
    mlflow_models.pickled_pyfunc_model(root, "pickled")
    mlflow_models.missing_dependency_model(root, "needy")
    with run_server(root, "--strict-readiness", "false") as server:
        yield Repo(server, sklearn, pyfunc)


@pytest.fixture
def http(repo: Repo) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=repo.server.http_url, timeout=30) as client:
        yield client


def column_inputs(rows: np.ndarray) -> list[dict[str, Any]]:
    return [
        {"name": c, "datatype": "FP64", "shape": [len(rows)], "data": rows[:, i].tolist()}
        for i, c in enumerate(mlflow_models.COLUMNS)
    ]


def expected_labels(repo: Repo, rows: np.ndarray) -> list[str]:
    return [str(v) for v in repo.sklearn.predict(mlflow_models.frame(rows))]


def pyfunc_body(x: list[float], count: list[int], names: list[str]) -> dict[str, Any]:
    n = len(x)
    return {
        "inputs": [
            {"name": "x", "datatype": "FP64", "shape": [n], "data": x},
            {"name": "count", "datatype": "INT64", "shape": [n], "data": count},
            {"name": "name", "datatype": "BYTES", "shape": [n], "data": names},
        ]
    }


def pyfunc_expected(
    repo: Repo, x: list[float], count: list[int], names: list[str], **params: Any
) -> Any:
    import pandas as pd

    frame = pd.DataFrame({"x": x, "count": np.array(count, dtype=np.int64), "name": names})
    return repo.pyfunc.predict(frame, params=params or None)


def test_index_loads_the_good_and_explains_the_refused(http: httpx.Client) -> None:
    index = {row["name"]: row for row in http.post("/v2/repository/index").json()}
    for name in ("sk", "sk-native", "py"):
        assert index[name]["state"] == "READY", index[name]
    assert index["pickled"]["state"] == "UNAVAILABLE"
    assert "python_model.pkl" in index["pickled"]["reason"]
    assert "trust_pickle" in index["pickled"]["reason"]
    assert index["needy"]["state"] == "UNAVAILABLE"
    assert "needs the package 'serval_absent_package'" in index["needy"]["reason"]


def test_metadata_comes_from_the_signature(http: httpx.Client) -> None:
    sk = http.get("/v2/models/sk").json()
    assert sk["platform"] == "mlflow_pyfunc"
    assert [(i["name"], i["datatype"], i["shape"]) for i in sk["inputs"]] == [
        (c, "FP64", [-1]) for c in mlflow_models.COLUMNS
    ]
    assert [(o["name"], o["datatype"]) for o in sk["outputs"]] == [("predict", "BYTES")]
    py = http.get("/v2/models/py").json()
    assert [(i["name"], i["datatype"]) for i in py["inputs"]] == [
        ("x", "FP64"),
        ("count", "INT64"),
        ("name", "BYTES"),
    ]
    native = http.get("/v2/models/sk-native").json()
    assert native["platform"] == "sklearn_skops"
    assert [o["name"] for o in native["outputs"]] == ["predict", "predict_proba"]


def test_v2_json_equals_mlflow_in_process(repo: Repo, http: httpx.Client) -> None:
    reply = http.post("/v2/models/sk/infer", json={"inputs": column_inputs(ROWS)})
    assert reply.status_code == 200, reply.text
    assert reply.json()["outputs"][0]["data"] == expected_labels(repo, ROWS)

    x, count, names = [0.5, -2.0, 3.25], [1, 2, 3], ["ann", "bob", "cy"]
    body = pyfunc_body(x, count, names) | {"parameters": {"scale": 4.0}}
    reply = http.post("/v2/models/py/infer", json=body)
    assert reply.status_code == 200, reply.text
    outputs = {o["name"]: o["data"] for o in reply.json()["outputs"]}
    want = pyfunc_expected(repo, x, count, names, scale=4.0)
    assert outputs["total"] == want["total"].tolist()
    assert outputs["greeting"] == want["greeting"].tolist()


def test_mlserver_pandas_convention_sends_columns_as_n_by_1(repo: Repo, http: httpx.Client) -> None:
    inputs = column_inputs(ROWS)
    for tensor in inputs:
        tensor["shape"] = [len(ROWS), 1]
    body = {"parameters": {"content_type": "pd"}, "inputs": inputs}
    reply = http.post("/v2/models/sk/infer", json=body)
    assert reply.status_code == 200, reply.text
    assert reply.json()["outputs"][0]["data"] == expected_labels(repo, ROWS)


def test_v2_binary_equals_mlflow_in_process(repo: Repo) -> None:
    with httpclient.InferenceServerClient(repo.server.http_address) as client:
        tensors = []
        for i, column in enumerate(mlflow_models.COLUMNS):
            tensor = httpclient.InferInput(column, [len(ROWS)], "FP64")
            tensor.set_data_from_numpy(np.ascontiguousarray(ROWS[:, i]), binary_data=True)
            tensors.append(tensor)
        wanted = [httpclient.InferRequestedOutput("predict", binary_data=True)]
        result = client.infer("sk", tensors, outputs=wanted)
    got = [v.decode() for v in result.as_numpy("predict")]
    assert got == expected_labels(repo, ROWS)


def test_grpc_equals_mlflow_in_process(repo: Repo) -> None:
    import tritonclient.grpc as grpcclient

    x, count, names = [1.5, 2.0], [7, -1], ["zoe", "yan"]
    with grpcclient.InferenceServerClient(repo.server.grpc_address) as client:
        tensors = []
        for name, data, datatype in (
            ("x", np.array(x), "FP64"),
            ("count", np.array(count, dtype=np.int64), "INT64"),
            ("name", np.array([n.encode() for n in names], dtype=np.object_), "BYTES"),
        ):
            tensor = grpcclient.InferInput(name, list(data.shape), datatype)
            tensor.set_data_from_numpy(data)
            tensors.append(tensor)
        result = client.infer("py", tensors, parameters={"scale": 0.5})
    want = pyfunc_expected(repo, x, count, names, scale=0.5)
    np.testing.assert_array_equal(result.as_numpy("total"), want["total"].to_numpy())
    assert [g.decode() for g in result.as_numpy("greeting")] == want["greeting"].tolist()


def test_v1_rest_rows_equal_mlflow_in_process(repo: Repo, http: httpx.Client) -> None:
    instances = [dict(zip(mlflow_models.COLUMNS, row.tolist(), strict=True)) for row in ROWS]
    reply = http.post("/v1/models/sk:predict", json={"instances": instances})
    assert reply.status_code == 200, reply.text
    assert reply.json()["predictions"] == expected_labels(repo, ROWS)

    native = http.post("/v1/models/sk-native:predict", json={"instances": ROWS.tolist()})
    assert native.status_code == 200, native.text
    labels = [p["predict"] for p in native.json()["predictions"]]
    assert labels == expected_labels(repo, ROWS)
    probabilities = [p["predict_proba"] for p in native.json()["predictions"]]
    from sklearn.base import is_classifier

    model = repo.sklearn.get_raw_model()
    assert is_classifier(model)
    want = model.predict_proba(mlflow_models.frame(ROWS))
    np.testing.assert_allclose(np.array(probabilities), want, rtol=0, atol=1e-12)


def test_a_wrong_dtype_is_a_400_naming_the_input(http: httpx.Client) -> None:
    body = pyfunc_body([1.0], [1], ["a"])
    body["inputs"][1]["datatype"] = "FP32"
    body["inputs"][1]["data"] = [1.5]
    reply = http.post("/v2/models/py/infer", json=body)
    assert reply.status_code == 400, reply.text
    assert "count" in reply.json()["error"]


def test_concurrent_clients_are_batched_and_get_their_own_rows(repo: Repo) -> None:
    async def client(http: httpx.AsyncClient, index: int) -> int:
        for round_ in range(ROUNDS):
            rows = 1 + (index + round_) % 3
            x = [float(index * 100 + round_ * 10 + r) for r in range(rows)]
            count = [index] * rows
            names = [f"c{index}r{round_}"] * rows
            reply = await http.post("/v2/models/py/infer", json=pyfunc_body(x, count, names))
            assert reply.status_code == 200, reply.text
            outputs = {o["name"]: o["data"] for o in reply.json()["outputs"]}
            want = pyfunc_expected(repo, x, count, names)
            assert outputs["total"] == want["total"].tolist()
            assert outputs["greeting"] == want["greeting"].tolist()
        return ROUNDS

    async def main() -> int:
        limits = httpx.Limits(max_connections=CLIENTS)
        url = repo.server.http_url
        async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as http:
            return sum(await asyncio.gather(*(client(http, i) for i in range(CLIENTS))))

    before = _stats(repo, "py")
    requests = asyncio.run(main())
    after = _stats(repo, "py")
    success = after["inference_stats"]["success"]["count"]
    assert success - before["inference_stats"]["success"]["count"] == requests
    executions = after["execution_count"] - before["execution_count"]
    assert executions < requests  # some requests shared a batch
    assert max(entry["batch_size"] for entry in after["batch_stats"]) > 1


def _stats(repo: Repo, model: str) -> dict[str, Any]:
    reply = httpx.get(f"{repo.server.http_url}/v2/models/{model}/stats", timeout=10)
    assert reply.status_code == 200, reply.text
    stats: dict[str, Any] = reply.json()["model_stats"][0]
    return stats
