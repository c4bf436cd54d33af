"""examples/build_runtime_examples.py builds a model per runtime, and each one loads."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from serval.core.lifecycle.loader import LoadRequest
from serval.core.lifecycle.source import FileSystemSource
from serval.core.tensors.datatypes import DataType
from serval.core.types import InferenceRequest, Tensor
from serval.runtimes.registry import RuntimeRegistry

REPOSITORY = Path(__file__).parents[2]
SCRIPT = REPOSITORY / "examples" / "build_runtime_examples.py"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The examples, built once into a temporary folder."""
    for module in ("sklearn", "skops", "xgboost", "lightgbm", "pandas"):
        pytest.importorskip(module)
    spec = importlib.util.spec_from_file_location("build_runtime_examples", SCRIPT)
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    root = tmp_path_factory.mktemp("runtimes")
    script.main(root)
    return root


def test_building_the_examples_leaves_the_git_tree_clean(built: Path) -> None:
    # Each file the script writes into examples/runtimes is ignored by git, or tracked with
    # exactly the bytes a build writes (the Python model's source, model.yaml).
    if shutil.which("git") is None or not (REPOSITORY / ".git").exists():
        pytest.skip("not a git checkout")
    for file in sorted(p for p in built.rglob("*") if p.is_file()):
        path = (Path("examples") / "runtimes" / file.relative_to(built)).as_posix()
        tracked = _git("ls-files", "--error-unmatch", path).returncode == 0
        if tracked:
            assert (REPOSITORY / path).read_bytes() == file.read_bytes(), path
        else:
            assert _git("check-ignore", "-q", path).returncode == 0, f"{path} is not ignored"


def _git(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["git", *args], cwd=REPOSITORY, capture_output=True, check=False)


def test_runtime_examples_build_and_load(built: Path) -> None:
    models = FileSystemSource(built).scan()
    assert sorted(models) == ["lightgbm", "python", "sklearn", "xgboost"]
    registry = RuntimeRegistry.default()
    for name, model in models.items():
        assert model.spec is not None, model.config_error
        predictor = registry(LoadRequest(name, 1, model.versions[1].path, model.spec)).load()
        try:
            first = predictor.metadata.inputs[0]
            if first.datatype is DataType.BYTES:
                data = np.array([b"a good day"], dtype=np.object_)
            else:
                data = np.ones((1, first.shape[1]), dtype=first.datatype.numpy_dtype)
            response = predictor.predict(
                InferenceRequest(name, [Tensor(first.name, first.datatype, data)])
            )
            assert response.outputs
        finally:
            predictor.close()
