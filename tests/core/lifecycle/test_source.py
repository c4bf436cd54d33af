from __future__ import annotations

from pathlib import Path

from serval.core.lifecycle.source import FileSystemSource
from serval.testing import write_version


def test_scan_finds_models_and_numbered_versions(tmp_path: Path) -> None:
    write_version(tmp_path, "a", 1)
    write_version(tmp_path, "a", 10)
    (tmp_path / "a" / "notes").mkdir()  # not a version
    (tmp_path / "a" / "0").mkdir()  # versions are positive
    (tmp_path / ".hidden").mkdir()
    (tmp_path / "README.md").write_text("not a model")
    models = FileSystemSource(tmp_path).scan()
    assert list(models) == ["a"]
    assert sorted(models["a"].versions) == [1, 10]
    assert models["a"].spec is not None


def test_fingerprint_changes_with_files_and_model_yaml(tmp_path: Path) -> None:
    folder = write_version(tmp_path, "a", 1)
    source = FileSystemSource(tmp_path)
    first = source.scan()["a"].versions[1].fingerprint
    assert source.scan()["a"].versions[1].fingerprint == first
    (folder / "model.onnx").write_bytes(b"changed")
    second = source.scan()["a"].versions[1].fingerprint
    assert second != first
    (tmp_path / "a" / "model.yaml").write_text("max_batch_size: 4\n")
    assert source.scan()["a"].versions[1].fingerprint != second


def test_bad_yaml_is_reported_not_raised(tmp_path: Path) -> None:
    write_version(tmp_path, "a", 1)
    (tmp_path / "a" / "model.yaml").write_text("labels: [unclosed\n")
    model = FileSystemSource(tmp_path).scan()["a"]
    assert model.spec is None
    assert model.config_error is not None and "model.yaml" in model.config_error


def test_missing_repository_scans_empty(tmp_path: Path) -> None:
    assert FileSystemSource(tmp_path / "nope").scan() == {}
    assert FileSystemSource(tmp_path).scan_model("../etc") is None
