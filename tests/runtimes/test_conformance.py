"""One conformance suite for every runtime, through the real server: load, metadata, inference
equal to the framework's own prediction, bad input, unload. A case is skipped only when its
extra is not installed."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from serval.testing import RunningServer, run_server
from tests.runtimes import builders

pytestmark = pytest.mark.e2e


@dataclass(frozen=True)
class Case:
    id: str
    requires: str  # the module its extra installs
    build: Any  # (repo, name) -> expected(rows)
    platform: str
    outputs: tuple[str, ...]
    input_name: str = "input"
    datatype: str = "FP64"
    parameters: dict[str, str] | None = None

    @property
    def model(self) -> str:
        return self.id


CASES = [
    Case("onnx", "onnxruntime", builders.onnx_linear, "onnxruntime_onnx", ("y",), "x", "FP32"),
    Case(
        "sklearn",
        "sklearn",
        builders.sklearn_classifier,
        "sklearn_skops",
        ("predict", "predict_proba"),
        parameters={"feature_names": "a,b,c,d"},
    ),
    Case(
        "sklearn-pickle",
        "sklearn",
        builders.sklearn_pickled_regressor,
        "sklearn_pickle",
        ("predict",),
    ),
    Case(
        "xgboost",
        "xgboost",
        builders.xgboost_classifier,
        "xgboost_ubj",
        ("predict", "predict_proba"),
    ),
    Case(
        "xgboost-booster",
        "xgboost",
        builders.xgboost_booster_regressor,
        "xgboost_json",
        ("predict",),
    ),
    Case(
        "lightgbm",
        "lightgbm",
        builders.lightgbm_classifier,
        "lightgbm_text",
        ("predict", "predict_proba"),
    ),
    Case("python", "numpy", builders.python_model, "python", ("total", "scaled")),
    Case(
        "torchscript",
        "torch",
        builders.torch_scripted,
        "pytorch_libtorch",
        ("logits", "label"),
        datatype="FP32",
    ),
    Case(
        "torch-export",
        "torch",
        builders.torch_exported,
        "torch_export",
        ("logits", "label"),
        datatype="FP32",
    ),
]
IDS = [case.id for case in CASES]


def installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


@dataclass
class Repo:
    server: RunningServer
    expected: dict[str, Any]


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Repo]:
    root = tmp_path_factory.mktemp("repo")
    expected = {case.id: case.build(root, case.model) for case in CASES if installed(case.requires)}
    if installed("sklearn"):
        builders.untrusted_pickle(root, "untrusted-pickle")
    with run_server(root, "--strict-readiness", "false", grpc=False) as server:
        yield Repo(server, expected)


@pytest.fixture
def http(repo: Repo) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=repo.server.http_url, timeout=30) as client:
        yield client


@pytest.fixture
def triton(repo: Repo) -> Iterator[httpclient.InferenceServerClient]:
    with httpclient.InferenceServerClient(repo.server.http_address) as client:
        yield client


def rows_for(case: Case, count: int = 7, seed: int = 42) -> np.ndarray:
    rows = np.random.default_rng(seed).normal(size=(count, builders.N_FEATURES))
    return rows.astype(np.float32 if case.datatype == "FP32" else np.float64)


def infer(
    triton: httpclient.InferenceServerClient,
    case: Case,
    rows: np.ndarray,
    outputs: list[str] | None = None,
) -> httpclient.InferResult:
    tensor = httpclient.InferInput(case.input_name, list(rows.shape), case.datatype)
    tensor.set_data_from_numpy(rows, binary_data=True)
    requested = [httpclient.InferRequestedOutput(n, binary_data=True) for n in outputs or []]
    return triton.infer(case.model, [tensor], outputs=requested or None)


def assert_same(got: np.ndarray, want: Any) -> None:
    want = np.asarray(want)
    if want.dtype.kind in "OUS":
        assert [g.decode() for g in got.ravel()] == [str(w) for w in want.ravel()]
    else:
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_loads(case: Case, http: httpx.Client) -> None:
    pytest.importorskip(case.requires)
    index = http.post("/v2/repository/index").json()
    states = {(row["name"], row.get("version")): row["state"] for row in index}
    assert states[(case.model, "1")] == "READY", index


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_metadata(case: Case, http: httpx.Client) -> None:
    pytest.importorskip(case.requires)
    meta = http.get(f"/v2/models/{case.model}").json()
    assert meta["platform"] == case.platform
    assert meta["versions"] == ["1"]
    assert [(i["name"], i["datatype"], i["shape"]) for i in meta["inputs"]] == [
        (case.input_name, case.datatype, [-1, builders.N_FEATURES])
    ]
    assert tuple(o["name"] for o in meta["outputs"]) == case.outputs
    assert meta.get("parameters") == case.parameters


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_infer_equals_the_framework(
    case: Case, repo: Repo, triton: httpclient.InferenceServerClient
) -> None:
    pytest.importorskip(case.requires)
    rows = rows_for(case)
    result = infer(triton, case, rows)
    want = repo.expected[case.id](rows)
    for name in case.outputs:
        assert_same(result.as_numpy(name), want[name])


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_selected_output_only(
    case: Case, repo: Repo, triton: httpclient.InferenceServerClient
) -> None:
    pytest.importorskip(case.requires)
    rows = rows_for(case, count=3)
    last = case.outputs[-1]
    result = infer(triton, case, rows, outputs=[last])
    assert [o["name"] for o in result.get_response()["outputs"]] == [last]
    assert_same(result.as_numpy(last), repo.expected[case.id](rows)[last])


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_bad_input_is_a_400_with_a_reason(
    case: Case, triton: httpclient.InferenceServerClient
) -> None:
    pytest.importorskip(case.requires)
    wide = np.zeros((2, builders.N_FEATURES + 1), dtype=rows_for(case).dtype)
    with pytest.raises(InferenceServerException) as raised:
        infer(triton, case, wide)
    assert raised.value.status() == "400"
    assert "expected shape" in raised.value.message()


def test_pickle_without_trust_is_refused_with_the_reason(http: httpx.Client) -> None:
    pytest.importorskip("sklearn")
    index = http.post("/v2/repository/index").json()
    row = next(r for r in index if r["name"] == "untrusted-pickle")
    assert row["state"] == "UNAVAILABLE"
    assert "model.joblib" in row["reason"]
    assert "runtime_options.trust_pickle: true" in row["reason"]
    assert "pickle-safety" in row["reason"]


def test_sklearn_rejects_nan_as_a_client_error(triton: httpclient.InferenceServerClient) -> None:
    pytest.importorskip("sklearn")
    sklearn_case = next(case for case in CASES if case.id == "sklearn")
    with pytest.raises(InferenceServerException) as raised:
        infer(triton, sklearn_case, np.array([[np.nan, 0.0, 0.0, 0.0]]))
    assert raised.value.status() == "400"
    assert "scikit-learn rejected the input" in raised.value.message()
    assert "NaN" in raised.value.message()


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_unload_frees_the_model(case: Case, http: httpx.Client) -> None:
    pytest.importorskip(case.requires)
    assert http.post(f"/v2/repository/models/{case.model}/unload").status_code == 200
    index = http.post("/v2/repository/index").json()
    row = next(r for r in index if r["name"] == case.model)
    assert (row["state"], row["reason"]) == ("UNAVAILABLE", "unloaded")
    assert http.get(f"/v2/models/{case.model}/ready").status_code != 200
    body = {"inputs": [{"name": case.input_name, "datatype": case.datatype, "shape": [1, 4]}]}
    body["inputs"][0]["data"] = [0.0] * 4
    assert http.post(f"/v2/models/{case.model}/infer", json=body).status_code in (404, 503)
