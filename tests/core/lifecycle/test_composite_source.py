"""A composite model's folder: model.yaml alone, read as one virtual version."""

from __future__ import annotations

from pathlib import Path

from serval.core.lifecycle.source import COMPOSITE_VERSION, FileSystemSource
from serval.testing import write_version

ENSEMBLE = "ensemble: {models: [a, b], combine: mean, output: y}\n"


def test_a_composite_folder_is_one_version_whose_fingerprint_is_model_yaml(
    tmp_path: Path,
) -> None:
    (tmp_path / "e").mkdir()
    (tmp_path / "e" / "model.yaml").write_text(ENSEMBLE)
    source = FileSystemSource(tmp_path)
    model = source.scan()["e"]
    assert model.config_error is None
    assert list(model.versions) == [COMPOSITE_VERSION]
    assert model.problems == ()  # no "has no version folder"
    assert model.spec is not None and model.spec.dependencies() == ("a", "b")
    first = model.versions[COMPOSITE_VERSION].fingerprint
    assert source.scan()["e"].versions[COMPOSITE_VERSION].fingerprint == first
    (tmp_path / "e" / "model.yaml").write_text(ENSEMBLE.replace("mean", "vote"))
    assert source.scan()["e"].versions[COMPOSITE_VERSION].fingerprint != first


def test_a_composite_folder_with_version_folders_is_an_error(tmp_path: Path) -> None:
    write_version(tmp_path, "e", 1)
    (tmp_path / "e" / "model.yaml").write_text(ENSEMBLE)
    model = FileSystemSource(tmp_path).scan()["e"]
    assert model.spec is None
    assert model.config_error is not None
    assert "ensemble: a composite model has no version folders (found 1/)" in model.config_error


def test_a_composite_that_calls_itself_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "e").mkdir()
    (tmp_path / "e" / "model.yaml").write_text(ENSEMBLE.replace("[a, b]", "[a, e]"))
    model = FileSystemSource(tmp_path).scan()["e"]
    assert model.config_error is not None
    assert "ensemble: member 1 calls the model itself" in model.config_error
