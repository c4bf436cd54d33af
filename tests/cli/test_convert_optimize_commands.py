"""``serval convert`` and ``serval optimize`` as a user runs them: what they print, their exit
status, no third-party warnings in their output, and converted versions that the server then
serves to the same requests as their sources."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from serval.cli.main import main
from serval.testing import run_server
from tests.runtimes import builders
from tests.tools.models import mlp_regressor, versions

pytest.importorskip("skl2onnx")
pytest.importorskip("onnxmltools")

SOURCES = {
    "sk": builders.sklearn_classifier,
    "xgb": builders.xgboost_classifier,
    "lgb": builders.lightgbm_classifier,
}
THIRD_PARTY_NOISE = ("WARNING", "[W:onnxruntime", "Warning:", "warnings.warn")


def serval(*args: str) -> subprocess.CompletedProcess[str]:
    """The real ``serval`` command, stdout and stderr together as a terminal shows them."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.run(
        [sys.executable, "-m", "serval", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )


def test_convert_refuses_a_difference_above_the_tolerance(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    builders.sklearn_classifier(tmp_path, "sk")
    assert main(["convert", str(tmp_path / "sk"), "--tolerance", "0"]) == 1
    captured = capsys.readouterr()
    assert "predict_proba" in captured.out
    assert "refused" in captured.err
    assert "nothing was written" in captured.err
    assert versions(tmp_path / "sk") == ["1"]


def test_convert_says_why_a_python_model_cannot_be_converted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    builders.python_model(tmp_path, "custom")  # its model.yaml sets parameters
    assert main(["convert", str(tmp_path / "custom")]) == 2
    err = capsys.readouterr().err
    assert "its predict is Python code, which has no ONNX form" in err
    assert "--output-model" not in err


def test_optimize_says_there_was_nothing_to_quantize_without_warnings(tmp_path: Path) -> None:
    builders.sklearn_classifier(tmp_path, "sk")
    converted = serval("convert", str(tmp_path / "sk"))
    assert converted.returncode == 0, converted.stdout
    assert not [noise for noise in THIRD_PARTY_NOISE if noise in converted.stdout]
    optimized = serval("optimize", str(tmp_path / "sk"), "--runs", "1")
    assert optimized.returncode == 0, optimized.stdout
    assert "INT8 quantization skipped" in optimized.stdout
    assert "nothing was written" in optimized.stdout
    assert "+ INT8 quantization" not in optimized.stdout
    assert not [noise for noise in THIRD_PARTY_NOISE if noise in optimized.stdout]
    assert versions(tmp_path / "sk") == ["1", "2"]


def test_optimize_quantizes_without_warnings(tmp_path: Path) -> None:
    mlp_regressor(tmp_path)
    assert main(["convert", str(tmp_path / "mlp"), "--output-model", str(tmp_path / "onnx")]) == 0
    # level 'all' made onnxruntime warn about hardware-specific optimizations, and the
    # quantizer logged a hint on the root logger.
    optimized = serval("optimize", str(tmp_path / "onnx"), "--level", "all", "--runs", "1")
    assert optimized.returncode == 0, optimized.stdout
    for fragment in ("+ INT8 quantization (", "size", "latency, 1 row", "latency, 64 rows"):
        assert fragment in optimized.stdout
    assert not [noise for noise in THIRD_PARTY_NOISE if noise in optimized.stdout]
    assert f"wrote {tmp_path / 'onnx' / '2' / 'model.onnx'}" in optimized.stdout


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, Any]]]:
    """Each native model (``sk``), its ONNX version in another model (``sk-onnx``, served side
    by side); and ``sk-next``, whose ONNX version 2 replaces version 1."""
    root = tmp_path_factory.mktemp("repo")
    expected = {}
    for name, build in SOURCES.items():
        expected[name] = build(root, name)
        assert (
            main(["convert", str(root / name), "--output-model", str(root / f"{name}-onnx")]) == 0
        )
    builders.sklearn_classifier(root, "sk-next")
    assert main(["convert", str(root / "sk-next")]) == 0
    yield root, expected


@pytest.fixture(scope="module")
def served(repo: tuple[Path, dict[str, Any]]) -> Iterator[httpx.Client]:
    with (
        run_server(repo[0], grpc=False) as server,
        httpx.Client(base_url=server.http_url, timeout=30) as client,
    ):
        yield client


def _request(rows: np.ndarray) -> dict[str, Any]:
    """The request a client of the native model sends: FP64 rows."""
    data = rows.ravel().tolist()
    return {
        "inputs": [{"name": "input", "datatype": "FP64", "shape": list(rows.shape), "data": data}]
    }


def _outputs(response: httpx.Response) -> dict[str, dict[str, Any]]:
    assert response.status_code == 200, response.text
    return {output["name"]: output for output in response.json()["outputs"]}


@pytest.mark.e2e
@pytest.mark.parametrize("name", sorted(SOURCES))
def test_the_converted_model_answers_the_request_its_source_answered(
    served: httpx.Client, name: str
) -> None:
    native_meta = served.get(f"/v2/models/{name}").json()
    onnx_meta = served.get(f"/v2/models/{name}-onnx").json()
    assert onnx_meta["platform"] == "onnxruntime_onnx"
    assert onnx_meta["inputs"] == native_meta["inputs"]
    assert onnx_meta["outputs"] == native_meta["outputs"]
    body = _request(np.random.default_rng(11).normal(size=(6, 4)))
    native = _outputs(served.post(f"/v2/models/{name}/infer", json=body))
    converted = _outputs(served.post(f"/v2/models/{name}-onnx/infer", json=body))
    assert list(converted) == list(native)
    for output, want in native.items():
        got = converted[output]
        assert (got["datatype"], got["shape"]) == (want["datatype"], want["shape"])
        if want["datatype"] == "BYTES":
            assert got["data"] == want["data"]
        else:
            np.testing.assert_allclose(got["data"], want["data"], atol=1e-4)


@pytest.mark.e2e
def test_the_next_version_answers_the_requests_of_the_first(
    repo: tuple[Path, dict[str, Any]], served: httpx.Client
) -> None:
    meta = served.get("/v2/models/sk-next").json()
    assert (meta["platform"], meta["versions"]) == ("onnxruntime_onnx", ["2"])
    rows = np.random.default_rng(12).normal(size=(5, 4))
    got = _outputs(served.post("/v2/models/sk-next/infer", json=_request(rows)))
    want = repo[1]["sk"](rows)
    assert [str(v) for v in got["predict"]["data"]] == [str(v) for v in want["predict"]]
    np.testing.assert_allclose(
        np.reshape(got["predict_proba"]["data"], got["predict_proba"]["shape"]),
        want["predict_proba"],
        atol=1e-4,
    )
