"""``serval convert`` and ``serval optimize``: new versions are written only when they match,
and the server then serves them."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from serval.cli.main import main
from serval.testing import run_server
from tests.onnx_models import linear, write_model
from tests.runtimes import builders

pytest.importorskip("skl2onnx")
pytest.importorskip("onnxmltools")
onnx = pytest.importorskip("onnx")

MLP_TRUST = "sklearn.neural_network._stochastic_optimizers.AdamOptimizer"


@dataclass
class Repo:
    root: Path
    expected: dict[str, Any]


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Repo:
    root = tmp_path_factory.mktemp("repo")
    expected = {
        "sk": builders.sklearn_classifier(root, "sk"),
        "xgb": builders.xgboost_classifier(root, "xgb"),
        "lgb": builders.lightgbm_classifier(root, "lgb"),
        "mlp": _mlp(root),
    }
    return Repo(root, expected)


def _mlp(root: Path) -> Any:
    import skops.io as sio  # noqa: PLC0415
    from sklearn.neural_network import MLPRegressor  # noqa: PLC0415

    features, _ = builders.training_data(rows=120)
    model = MLPRegressor(hidden_layer_sizes=(32, 32), max_iter=50, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # not converged: it does not need to be good
        model.fit(features, features @ np.array([1.0, -2.0, 0.5, 3.0]))
    sio.dump(model, builders.version_folder(root, "mlp") / "model.skops")
    (root / "mlp" / "model.yaml").write_text(f"runtime_options:\n  trusted_types: [{MLP_TRUST}]\n")
    return lambda rows: {"predict": model.predict(rows)}


def versions(model_dir: Path) -> list[str]:
    return sorted(p.name for p in model_dir.iterdir() if p.is_dir() and not p.name.startswith("."))


def test_convert_refuses_a_difference_above_the_tolerance(
    repo: Repo, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["convert", str(repo.root / "sk"), "--tolerance", "0"]) == 1
    captured = capsys.readouterr()
    assert "predict_proba" in captured.out
    assert "refused" in captured.err
    assert "nothing was written" in captured.err
    assert versions(repo.root / "sk") == ["1"]


def test_convert_names_what_it_cannot_convert(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_model(tmp_path, "onnx-model", 1, linear([1.0], 0.0))
    assert main(["convert", str(tmp_path / "onnx-model")]) == 2
    assert "is ONNX already; see serval optimize" in capsys.readouterr().err
    builders.python_model(tmp_path, "custom")
    assert main(["convert", str(tmp_path / "custom")]) == 2
    assert "cannot convert a 'python' model" in capsys.readouterr().err
    assert main(["convert", str(tmp_path / "nothing")]) == 2
    assert "is not a model folder" in capsys.readouterr().err


def test_convert_checks_the_rows_file(repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    rows = repo.root / "bad.npy"
    np.save(rows, np.zeros((3, 5)))
    assert main(["convert", str(repo.root / "sk"), "--rows", str(rows)]) == 2
    assert "shape [3, 5]; expected [rows, 4]" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["sk", "xgb", "lgb"])
def test_convert_writes_the_next_version(
    repo: Repo, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = repo.root / f"{name}-rows.npy"
    np.save(rows, np.random.default_rng(3).normal(size=(50, 4)))
    assert main(["convert", str(repo.root / name), "--rows", str(rows)]) == 0
    out = capsys.readouterr().out
    assert "max absolute difference on 50 rows" in out
    assert f"wrote {repo.root / name / '2' / 'model.onnx'}" in out
    graph = onnx.load(repo.root / name / "2" / "model.onnx").graph
    assert [i.name for i in graph.input] == ["input"]
    assert [o.name for o in graph.output] == ["predict", "predict_proba"]


def test_convert_will_not_mix_runtime_options_into_the_onnx_version(
    repo: Repo, capsys: pytest.CaptureFixture[str]
) -> None:
    mlp = repo.root / "mlp"
    assert main(["convert", str(mlp)]) == 2
    assert "sets runtime_options" in capsys.readouterr().err
    assert main(["convert", str(mlp), "--output-model", str(repo.root / "mlp-onnx")]) == 0
    assert versions(repo.root / "mlp-onnx") == ["1"]


def test_optimize_quantizes_into_a_new_version(
    repo: Repo, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["optimize", str(repo.root / "mlp-onnx"), "--runs", "5"]) == 0
    out = capsys.readouterr().out
    for fragment in ("INT8 quantization", "size", "latency, 1 row", "latency, 64 rows", "predict"):
        assert fragment in out
    ops = {
        node.op_type for node in onnx.load(repo.root / "mlp-onnx" / "2" / "model.onnx").graph.node
    }
    assert ops & {"DynamicQuantizeLinear", "MatMulInteger", "DynamicQuantizeMatMul"}, ops


def test_optimize_refuses_above_an_explicit_tolerance(
    repo: Repo, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(["optimize", str(repo.root / "mlp-onnx"), "--version", "1", "--tolerance", "0"]) == 1
    )
    assert "nothing was written" in capsys.readouterr().err
    assert versions(repo.root / "mlp-onnx") == ["1", "2"]


def test_optimize_without_quantization(repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["optimize", str(repo.root / "xgb"), "--no-quantize", "--runs", "1"]) == 0
    assert "graph optimization (extended)\n" in capsys.readouterr().out
    assert versions(repo.root / "xgb") == ["1", "2", "3"]


@pytest.fixture(scope="module")
def served(repo: Repo) -> Iterator[httpx.Client]:
    with (
        run_server(repo.root, grpc=False) as server,
        httpx.Client(base_url=server.http_url, timeout=30) as client,
    ):
        yield client


@pytest.mark.e2e
@pytest.mark.parametrize(("name", "version"), [("sk", "2"), ("xgb", "3"), ("lgb", "2")])
def test_server_serves_the_new_versions(
    repo: Repo, served: httpx.Client, name: str, version: str
) -> None:
    meta = served.get(f"/v2/models/{name}").json()
    assert (meta["platform"], meta["versions"]) == ("onnxruntime_onnx", [version])
    rows = np.random.default_rng(11).normal(size=(6, 4)).astype(np.float32)
    body = {
        "inputs": [
            {"name": "input", "datatype": "FP32", "shape": [6, 4], "data": rows.ravel().tolist()}
        ]
    }
    response = served.post(f"/v2/models/{name}/infer", json=body)
    assert response.status_code == 200, response.text
    got = {o["name"]: np.array(o["data"]).reshape(o["shape"]) for o in response.json()["outputs"]}
    want = repo.expected[name](rows.astype(np.float64))
    assert [str(v) for v in got["predict"]] == [str(v) for v in want["predict"]]
    np.testing.assert_allclose(got["predict_proba"], want["predict_proba"], atol=1e-4)


@pytest.mark.e2e
def test_server_serves_the_quantized_version(repo: Repo, served: httpx.Client) -> None:
    rows = np.random.default_rng(12).normal(size=(5, 4))
    body = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [5, 4]}]}
    body["inputs"][0]["data"] = rows.ravel().tolist()
    response = served.post("/v2/models/mlp-onnx/infer", json=body)
    assert response.status_code == 200, response.text
    got = np.array(response.json()["outputs"][0]["data"])
    want = repo.expected["mlp"](rows)["predict"]
    assert got.shape == want.shape
    assert np.max(np.abs(got - want)) < 0.5 * (1 + np.max(np.abs(want)))
