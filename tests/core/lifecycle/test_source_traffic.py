"""model.yaml's traffic section in the source: it reloads no version (the fingerprint leaves
it out), and a policy naming a version the version policy does not serve is a model.yaml error
naming the field."""

from __future__ import annotations

import shutil
from pathlib import Path

from serval.core.lifecycle.source import FileSystemSource
from serval.testing import write_version


def test_a_change_of_the_traffic_section_alone_keeps_every_fingerprint(tmp_path: Path) -> None:
    write_version(tmp_path, "m", 1)
    write_version(tmp_path, "m", 2)
    spec = tmp_path / "m" / "model.yaml"
    spec.write_text("version_policy: all\n")
    source = FileSystemSource(tmp_path)
    before = {v: s.fingerprint for v, s in source.scan()["m"].versions.items()}

    spec.write_text('version_policy: all\ntraffic:\n  routes: {"1": 90, "2": 10}\n')
    with_policy = source.scan()["m"]
    assert with_policy.spec is not None and with_policy.spec.traffic is not None
    assert {v: s.fingerprint for v, s in with_policy.versions.items()} == before

    spec.write_text('# weights changed\nversion_policy: all\ntraffic:\n  routes: {"1": 1}\n')
    assert {v: s.fingerprint for v, s in source.scan()["m"].versions.items()} == before

    spec.write_text("version_policy: all\nmax_batch_size: 4\n")  # any other section reloads
    after = {v: s.fingerprint for v, s in source.scan()["m"].versions.items()}
    assert all(after[v] != before[v] for v in before)


def test_a_change_of_the_monitoring_section_alone_keeps_every_fingerprint(
    tmp_path: Path,
) -> None:
    write_version(tmp_path, "m", 1)
    spec = tmp_path / "m" / "model.yaml"
    spec.write_text("max_batch_size: 4\n")
    source = FileSystemSource(tmp_path)
    before = source.scan()["m"].versions[1].fingerprint
    spec.write_text("max_batch_size: 4\nmonitoring:\n  log: {sample_rate: 0.5}\n")
    monitored = source.scan()["m"]
    assert monitored.spec is not None and monitored.spec.monitoring is not None
    assert monitored.versions[1].fingerprint == before


def test_a_policy_naming_a_version_that_is_not_served_is_a_model_yaml_error(
    tmp_path: Path,
) -> None:
    write_version(tmp_path, "m", 1)
    write_version(tmp_path, "m", 2)
    write_version(tmp_path, "m", 3)
    spec = tmp_path / "m" / "model.yaml"
    spec.write_text('version_policy: {specific: [1, 2]}\ntraffic:\n  routes: {"1": 50, "3": 50}\n')
    model = FileSystemSource(tmp_path).scan()["m"]
    assert model.spec is None
    assert model.config_error == (
        f"{spec}: traffic.routes.3: version 3 is not served (version_policy serves 1, 2)"
    )

    spec.write_text("traffic:\n  canary: {version: '3'}\n")  # latest 1: no stable version
    model = FileSystemSource(tmp_path).scan()["m"]
    assert model.config_error is not None
    assert "traffic.canary.version: a canary needs a stable version" in model.config_error

    spec.write_text("version_policy: {latest: 2}\ntraffic:\n  shadow: {versions: ['1']}\n")
    model = FileSystemSource(tmp_path).scan()["m"]
    assert model.config_error == (
        f"{spec}: traffic.shadow.versions.0: version 1 is not served (version_policy serves 2, 3)"
    )


def test_a_new_section_naming_a_version_without_a_folder_is_an_error(tmp_path: Path) -> None:
    write_version(tmp_path, "m", 1)
    write_version(tmp_path, "m", 2)
    spec = tmp_path / "m" / "model.yaml"
    spec.write_text('version_policy: all\ntraffic:\n  routes: {"1": 50, "3": 50}\n')
    model = FileSystemSource(tmp_path).scan()["m"]
    assert model.config_error == (
        f"{spec}: traffic.routes.3: version 3 is not served (version_policy serves 1, 2)"
    )


def test_a_version_that_goes_away_after_its_policy_was_accepted_is_no_error(
    tmp_path: Path,
) -> None:
    for version in (1, 2, 3):
        write_version(tmp_path, "m", version)
    spec = tmp_path / "m" / "model.yaml"
    spec.write_text('version_policy: all\ntraffic:\n  routes: {"1": 50, "3": 50}\n')
    source = FileSystemSource(tmp_path)
    assert source.scan()["m"].config_error is None
    shutil.rmtree(tmp_path / "m" / "3")  # its share goes to the others
    model = source.scan()["m"]
    assert model.config_error is None
    assert model.spec is not None and model.spec.traffic is not None
    # A changed section is checked again, against the versions served now.
    spec.write_text('version_policy: all\ntraffic:\n  routes: {"1": 40, "3": 60}\n')
    assert source.scan()["m"].config_error is not None
