from __future__ import annotations

import logging
from pathlib import Path

import pytest

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


# -- mistakes are logged once, when they appear or change ----------------------------------


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    caplog.clear()
    return messages


@pytest.fixture
def caplog_warnings(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.WARNING, logger="serval.core.lifecycle.source")
    return caplog


def test_a_model_yaml_mistake_is_logged_once_and_again_when_it_changes(
    tmp_path: Path, caplog_warnings: pytest.LogCaptureFixture
) -> None:
    write_version(tmp_path, "a", 1)
    spec = tmp_path / "a" / "model.yaml"
    spec.write_text("version_polcy: all\n")
    source = FileSystemSource(tmp_path)
    source.scan()
    (logged,) = warnings_of(caplog_warnings)
    assert str(spec) in logged
    assert "version_polcy: unknown key (did you mean version_policy?)" in logged
    for _ in range(3):
        source.scan()
        source.scan_model("a")
    assert warnings_of(caplog_warnings) == []
    spec.write_text("max_batch_size: -1\n")
    source.scan()
    (changed,) = warnings_of(caplog_warnings)
    assert "max_batch_size" in changed
    spec.write_text("max_batch_size: 2\n")  # fixed: nothing to say
    source.scan()
    assert warnings_of(caplog_warnings) == []
    spec.write_text("max_batch_size: -1\n")  # broken again: said again
    source.scan()
    assert len(warnings_of(caplog_warnings)) == 1


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("labels: [unclosed\n", "cannot read"),
        ("version_policy:\n\tlatest: 2\n", "never tabs"),
        ("- a list\n", "expected a mapping at the top level"),
    ],
)
def test_unreadable_model_yaml_is_logged_with_its_file(
    tmp_path: Path, caplog_warnings: pytest.LogCaptureFixture, text: str, expected: str
) -> None:
    write_version(tmp_path, "a", 1)
    (tmp_path / "a" / "model.yaml").write_text(text)
    FileSystemSource(tmp_path).scan()
    (logged,) = warnings_of(caplog_warnings)
    assert str(tmp_path / "a" / "model.yaml") in logged
    assert expected in logged


def test_a_model_file_directly_in_the_model_folder(
    tmp_path: Path, caplog_warnings: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "mymodel").mkdir()
    (tmp_path / "mymodel" / "model.onnx").write_bytes(b"")
    source = FileSystemSource(tmp_path)
    model = source.scan()["mymodel"]
    assert model.versions == {}
    (logged,) = warnings_of(caplog_warnings)
    assert logged == (
        f"{tmp_path}/mymodel/ has no version folder, so nothing loads: model.onnx is directly "
        f"in the model folder: put it in {tmp_path}/mymodel/1/"
    )
    source.scan()
    assert warnings_of(caplog_warnings) == []


def test_an_empty_model_folder(tmp_path: Path, caplog_warnings: pytest.LogCaptureFixture) -> None:
    (tmp_path / "empty").mkdir()
    FileSystemSource(tmp_path).scan()
    (logged,) = warnings_of(caplog_warnings)
    assert "empty/ has no version folder" in logged and "empty/1/" in logged


@pytest.mark.parametrize("folder", ["v1", "V1", "version_1", "0"])
def test_a_folder_meant_as_a_version(
    tmp_path: Path, caplog_warnings: pytest.LogCaptureFixture, folder: str
) -> None:
    (tmp_path / "m" / folder).mkdir(parents=True)
    FileSystemSource(tmp_path).scan()
    logged = warnings_of(caplog_warnings)
    assert (
        f"{tmp_path}/m/{folder}/ is not a version folder: version folders are positive "
        f"integers: rename it to 1/"
    ) in logged
    assert f"{tmp_path}/m/ has no version folder, so nothing loads" in logged


def test_other_folders_in_a_model_folder_are_fine(
    tmp_path: Path, caplog_warnings: pytest.LogCaptureFixture
) -> None:
    write_version(tmp_path, "m", 1)
    (tmp_path / "m" / "assets").mkdir()
    (tmp_path / "m" / "README.md").write_text("notes")
    FileSystemSource(tmp_path).scan()
    assert warnings_of(caplog_warnings) == []


def test_model_yaml_inside_a_version_folder(
    tmp_path: Path, caplog_warnings: pytest.LogCaptureFixture
) -> None:
    write_version(tmp_path, "m", 1, files=("model.onnx", "model.yaml"))
    FileSystemSource(tmp_path).scan()
    (logged,) = warnings_of(caplog_warnings)
    assert logged == (
        f"{tmp_path}/m/1/model.yaml is ignored: model.yaml belongs in the model folder, "
        f"{tmp_path}/m/model.yaml"
    )


def test_a_label_naming_a_missing_version(
    tmp_path: Path, caplog_warnings: pytest.LogCaptureFixture
) -> None:
    write_version(tmp_path, "m", 1)
    write_version(tmp_path, "m", 2)
    (tmp_path / "m" / "model.yaml").write_text("labels: {stable: 1, canary: 3}\n")
    source = FileSystemSource(tmp_path)
    source.scan()
    (logged,) = warnings_of(caplog_warnings)
    assert logged == (
        f"{tmp_path}/m/model.yaml: labels.canary: version 3 does not exist "
        f"(version folders found: 1, 2)"
    )
    source.scan()
    assert warnings_of(caplog_warnings) == []
    write_version(tmp_path, "m", 3)  # the version arrives: the warning goes
    source.scan()
    assert warnings_of(caplog_warnings) == []


def test_a_repository_that_is_a_model_folder(
    tmp_path: Path, caplog_warnings: pytest.LogCaptureFixture
) -> None:
    folder = write_version(tmp_path, "mymodel", 1)
    source = FileSystemSource(tmp_path / "mymodel")
    assert list(source.scan()) == ["1"]
    (logged,) = warnings_of(caplog_warnings)
    assert logged.startswith(f"the model repository {tmp_path}/mymodel looks like a model folder")
    assert "(it holds 1/)" in logged and f"serve its parent folder, {tmp_path}" in logged
    assert folder.is_dir()
    source.scan()
    assert warnings_of(caplog_warnings) == []


def test_a_missing_repository_is_logged_once(
    tmp_path: Path, caplog_warnings: pytest.LogCaptureFixture
) -> None:
    source = FileSystemSource(tmp_path / "nope")
    source.scan()
    source.scan()
    (logged,) = warnings_of(caplog_warnings)
    assert "nope is not a folder" in logged


def test_a_removed_model_is_forgotten(
    tmp_path: Path, caplog_warnings: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "empty").mkdir()
    source = FileSystemSource(tmp_path)
    source.scan()
    assert len(warnings_of(caplog_warnings)) == 1
    (tmp_path / "empty").rmdir()
    source.scan()
    (tmp_path / "empty").mkdir()  # back, with the same mistake: said again
    source.scan()
    assert len(warnings_of(caplog_warnings)) == 1
