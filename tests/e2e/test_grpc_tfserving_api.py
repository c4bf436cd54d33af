"""TF Serving's gRPC API against the real server with tensorflow-serving-api's own stubs.

The package depends on TensorFlow, so it is not in the ``dev`` extra; this test runs where it
is installed (``pip install --no-deps tensorflow-serving-api`` is enough: without TensorFlow,
the ``tensorflow`` protos its modules import are compiled here from serval's vendored ones).
The client runs in a subprocess, so that no stand-in ``tensorflow`` package is importable by
the other tests.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from serval.testing import run_server
from tests.e2e.tfserving_models import SHOUT
from tests.onnx_models import linear, write_model
from tests.runtimes.builders import write_python_model

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        importlib.util.find_spec("tensorflow_serving") is None,
        reason="tensorflow-serving-api is not installed (pip install --no-deps "
        "tensorflow-serving-api)",
    ),
]

ROOT = Path(__file__).resolve().parents[2]
SHIM = Path(__file__).resolve().parent / "tfserving_shim"


def _tensorflow_protos(folder: Path) -> None:
    """TensorFlow's protos the stubs import, as ``tensorflow.*`` modules in ``folder``."""
    sources = [ROOT / "proto", SHIM]
    files = [
        str(path.relative_to(source))
        for source in sources
        for top in ("tensorflow", "xla")
        for path in sorted((source / top).rglob("*.proto"))
        if (source / top).is_dir()
    ]
    spec = importlib.util.find_spec("grpc_tools")
    assert spec is not None and spec.submodule_search_locations, "grpcio-tools is missing"
    well_known = Path(next(iter(spec.submodule_search_locations))) / "_proto"
    folder.mkdir(parents=True, exist_ok=True)
    # protoc in a process of its own: grpc_tools' protobuf runtime crashes a process that has
    # loaded TensorFlow's.
    command = [
        sys.executable, "-m", "grpc_tools.protoc", *(f"-I{source}" for source in sources),
        f"-I{well_known}", f"--python_out={folder}", *files,
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, f"protoc failed: {done.stderr}"


def test_tensorflow_serving_api_stubs(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    write_model(repo, "linear", 1, linear([1.0, 2.0], 0.0))
    write_model(repo, "linear", 2, linear([10.0, 20.0], 1.0))
    (repo / "linear" / "model.yaml").write_text(
        "version_policy: {latest: 2}\nlabels: {stable: 1, canary: 2}\n"
    )
    write_python_model(repo / "shout" / "1", SHOUT)
    paths = [str(ROOT)]
    if importlib.util.find_spec("tensorflow") is None:
        shim = tmp_path / "shim"
        _tensorflow_protos(shim)
        paths.insert(0, str(shim))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([*paths, os.environ.get("PYTHONPATH", "")])}
    with run_server(repo) as server:
        done = subprocess.run(
            [sys.executable, "-m", "tests.e2e.tfserving_api_client", server.grpc_address],
            capture_output=True,
            text=True,
            env=env,
            cwd=ROOT,
            timeout=120,
            check=False,
        )
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert found["fp32"] == [31.0, 21.0]
    assert found["fp32_shape"] == [2, 1]
    assert found["fp32_spec"] == ["linear", 2]
    assert found["label_stable"] == [3.0, 2.0]
    assert found["strings"] == ["HI!", "YO!"]
    assert found["signature"] == [2, 2]
    assert found["bad_signature"].startswith("INVALID_ARGUMENT: ")
    assert "nope" in found["bad_signature"]
    assert found["unknown_model"].startswith("NOT_FOUND: ")
    assert found["metadata"] == {
        "version": 2,
        "method": "tensorflow/serving/predict",
        "x": ["DT_FLOAT", -1, 2],
    }
    assert found["status"] == [[1, "AVAILABLE"], [2, "AVAILABLE"]]
