"""MLServer's request conventions with MLServer's own codecs, over REST and gRPC.

``mlserver`` cannot be installed beside serval's dependencies (through fastapi < 0.116 it
pins starlette < 0.47), so its client side runs in a virtual environment of its own, which
sees this environment's packages (``--system-site-packages``) and adds mlserver's: built once
into ``~/.cache/serval-tests``, or taken from ``SERVAL_TEST_MLSERVER_PYTHON``
(an interpreter that has mlserver).
"""

from __future__ import annotations

import json
import os
import subprocess
import venv
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from serval.testing import RunningServer, run_server
from tests.onnx_models import linear, write_model
from tests.runtimes.builders import sklearn_classifier, write_python_model

pytestmark = pytest.mark.e2e

MLSERVER = "mlserver==1.7.1"
CLIENT = Path(__file__).with_name("mlserver_client.py")
WEIGHTS = [1.0, 2.0, -1.0, 0.5]  # the linear model's, in its columns' order w, x, y, z

SHOUT = """
    from serval import ServingModel, TensorInfo


    class Shout(ServingModel):
        inputs = [TensorInfo("text", "BYTES")]
        outputs = [TensorInfo("loud", "BYTES")]
        input_format = "strings"

        def predict(self, data):
            return {"loud": [text.upper() for text in data["text"]]}
"""


def mlserver_python() -> Path:
    given = os.environ.get("SERVAL_TEST_MLSERVER_PYTHON")
    if given:
        return Path(given)
    home = Path.home() / ".cache" / "serval-tests" / MLSERVER.replace("==", "-")
    python = home / "bin" / "python"
    done = home / ".installed"
    if not done.exists():
        venv.create(home, system_site_packages=True, with_pip=True, clear=True)
        installed = subprocess.run(
            [str(python), "-m", "pip", "install", "-q", MLSERVER],
            capture_output=True,
            text=True,
            check=False,
            timeout=600,
        )
        if installed.returncode != 0:
            pytest.fail(f"cannot install {MLSERVER} into {home}:\n{installed.stderr[-2000:]}")
        done.touch()
    return python


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    repository = tmp_path_factory.mktemp("repository")
    sklearn_classifier(repository, "classifier")  # fitted on a DataFrame: feature_names_in_
    write_model(repository, "linear", 1, linear(WEIGHTS, 0.0))
    (repository / "linear" / "model.yaml").write_text(
        "inputs:\n  - name: x\n    columns: [w, x, y, z]\n"
    )
    write_python_model(repository / "shout" / "1", SHOUT)
    with run_server(repository) as running:
        yield running


@pytest.fixture(scope="module")
def results(server: RunningServer) -> dict[str, object]:
    finished = subprocess.run(
        [str(mlserver_python()), str(CLIENT), server.http_url, server.grpc_address],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
        cwd=CLIENT.parent,
        env={**os.environ, "PYTHONPATH": ""},
    )
    assert finished.returncode == 0, finished.stderr[-4000:]
    return json.loads(finished.stdout.strip().splitlines()[-1])


def test_pandas_codec_maps_columns_by_feature_names_over_rest_and_grpc(
    results: dict[str, object], tmp_path: Path
) -> None:
    expected = sklearn_classifier(tmp_path, "again")  # the same data, seed and model
    rows = np.array([[2.0, 1.5, 0.0, 0.5], [-2.0, -0.5, 1.0, -1.0]])  # a, b, c, d
    labels = expected(rows)["predict"].tolist()
    assert results["pd_rest_status"] == 200
    assert results["pd_rest_parameters"] == {"content_type": "pd"}
    assert results["pd_rest_output_parameters"] == [{"content_type": "str"}]
    assert results["pd_rest_frame"] == {"predict": labels}
    assert results["pd_grpc_content_type"] == "pd"
    assert results["pd_grpc_frame"] == {"predict": labels}


def test_pandas_codec_maps_columns_declared_in_model_yaml(results: dict[str, object]) -> None:
    # Rows (w, x, y, z) = (1, 0, 1, 2) and (1, 1, 0, 0), from integer and float columns.
    assert results["pd_columns_status"] == 200
    assert results["pd_columns_y"] == [1.0 - 1.0 + 1.0, 1.0 + 2.0]


def test_a_missing_column_is_named(results: dict[str, object]) -> None:
    status, error = results["pd_missing"]  # type: ignore[misc]
    assert status == 400
    assert "missing column(s) 'x' of input 'x'" in error


def test_numpy_request_codec_over_rest_and_grpc(results: dict[str, object]) -> None:
    want = [[1.0 - 1.0 + 1.0], [1.0 + 2.0]]
    assert results["np_rest_status"] == 200
    assert results["np_rest_output_parameters"] == [{"content_type": "np"}]
    assert results["np_rest"] == want
    assert results["np_grpc"] == want


def test_string_request_codec_over_rest_and_grpc(results: dict[str, object]) -> None:
    assert results["str_rest_status"] == 200
    assert results["str_rest"] == ["HI", "YO"]
    assert results["str_grpc"] == ["AB", "CD"]


def test_without_markers_an_n_by_1_string_tensor_is_still_refused(server: RunningServer) -> None:
    body = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [2, 1], "data": ["a", "b"]}]}
    reply = httpx.post(f"{server.http_url}/v2/models/shout/infer", json=body, timeout=30)
    assert reply.status_code == 400
    assert "expected shape [-1]" in reply.json()["error"]
