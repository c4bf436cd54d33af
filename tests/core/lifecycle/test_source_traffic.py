"""model.yaml's traffic section in the source: it reloads no version (the fingerprint leaves
it out), and a policy naming a version the version policy does not serve is a model.yaml error
naming the field."""

from __future__ import annotations

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


def test_a_version_whose_folder_is_missing_is_no_error_if_the_policy_would_serve_it(
    tmp_path: Path,
) -> None:
    # Written before version 3 arrives, or left after it went: its share goes to the others.
    write_version(tmp_path, "m", 1)
    write_version(tmp_path, "m", 2)
    (tmp_path / "m" / "model.yaml").write_text(
        'version_policy: all\ntraffic:\n  routes: {"1": 50, "3": 50}\n'
    )
    model = FileSystemSource(tmp_path).scan()["m"]
    assert model.config_error is None
    assert model.spec is not None and model.spec.traffic is not None
