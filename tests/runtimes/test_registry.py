"""The runtime registry: choosing a runtime by model.yaml or artifact name, lazy imports, and
third-party runtimes from the ``serval.runtimes`` entry-point group."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from serval.core.errors import ModelConfigError
from serval.core.lifecycle.loader import LoadRequest
from serval.core.model_spec import ModelSpec
from serval.runtimes.registry import (
    BUILTIN_RUNTIMES,
    DeferredLoader,
    RuntimeEntry,
    RuntimeRegistry,
)
from serval.testing import EchoPredictor, write_version


def request(folder: Path, spec: ModelSpec | None = None) -> LoadRequest:
    return LoadRequest("m", 1, folder, spec or ModelSpec())


@pytest.mark.parametrize(
    ("artifact", "runtime"),
    [
        ("model.onnx", "onnx"),
        ("model.skops", "sklearn"),
        ("model.joblib", "sklearn"),
        ("model.pkl", "sklearn"),
        ("model.ubj", "xgboost"),
        ("model.json", "xgboost"),
        ("model.txt", "lightgbm"),
        ("model.py", "python"),
        ("model.pt", "torch"),
        ("model.pt2", "torch"),
        ("model.pth", "torch"),
    ],
)
def test_runtime_chosen_by_artifact_name(tmp_path: Path, artifact: str, runtime: str) -> None:
    folder = write_version(tmp_path, "m", 1, [artifact])
    assert RuntimeRegistry.default().choose(request(folder)).name == runtime


def test_model_py_wins_over_the_files_it_ships(tmp_path: Path) -> None:
    folder = write_version(tmp_path, "m", 1, ["model.txt", "model.json", "model.py"])
    assert RuntimeRegistry.default().choose(request(folder)).name == "python"


def test_model_yaml_runtime_wins_over_the_artifact(tmp_path: Path) -> None:
    folder = write_version(tmp_path, "m", 1, ["model.json"])
    spec = ModelSpec(runtime="python")
    assert RuntimeRegistry.default().choose(request(folder, spec)).name == "python"


def test_unknown_runtime_and_missing_artifact_are_config_errors(tmp_path: Path) -> None:
    folder = write_version(tmp_path, "m", 1, ["weights.bin"])
    registry = RuntimeRegistry.default()
    with pytest.raises(ModelConfigError, match=r"unknown runtime 'caffe'; known: .*sklearn"):
        registry(request(folder, ModelSpec(runtime="caffe")))
    with pytest.raises(ModelConfigError, match=r"no model artifact .*model\.skops"):
        registry(request(folder))


def test_the_runtime_is_imported_only_when_loading(tmp_path: Path) -> None:
    folder = write_version(tmp_path, "m", 1, ["model.bin"])
    entry = RuntimeEntry("missing", "serval_no_such_runtime:Loader", ("model.bin",), "serval-x")
    loader = RuntimeRegistry({"missing": entry})(request(folder))
    assert isinstance(loader, DeferredLoader)  # building the loader imported nothing
    with pytest.raises(ModelConfigError) as raised:
        loader.load()
    assert "runtime 'missing' is not installed (serval_no_such_runtime is missing)" in str(
        raised.value
    )
    assert "pip install 'serval-x'" in str(raised.value)


PLUGIN = """
from serval.testing import EchoPredictor


class EchoLoader:
    def __init__(self, request):
        self.request = request

    def load(self):
        return EchoPredictor()
"""


def test_third_party_runtime_from_an_installed_distribution(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site"
    dist_info = site / "serval_echo-1.0.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: serval-echo\nVersion: 1.0\n")
    (dist_info / "entry_points.txt").write_text(
        "[serval.runtimes]\necho = serval_echo_plugin:EchoLoader\n"
    )
    (site / "serval_echo_plugin.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delitem(sys.modules, "serval_echo_plugin", raising=False)

    registry = RuntimeRegistry.default()
    assert "echo" in registry.names
    folder = write_version(tmp_path / "repo", "m", 1, ["weights.bin"])
    entry = registry.choose(request(folder, ModelSpec(runtime="echo")))
    assert entry.requirement == "serval-echo"
    predictor = registry(request(folder, ModelSpec(runtime="echo"))).load()
    assert isinstance(predictor, EchoPredictor)


def test_builtin_runtimes_name_serval_server_extras() -> None:
    """``serval`` on the package index is an unrelated project: the hints name ours."""
    for entry in BUILTIN_RUNTIMES:
        if entry.name == "native":  # needs the extra of the runtime it hands the file to
            assert entry.requirement == "serval-server"
        else:
            assert entry.requirement == f"serval-server[{entry.name}]"
