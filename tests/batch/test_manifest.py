"""The output folder's rules: refused when it exists, resumed only by the same job, and
``--overwrite`` removes only what a job wrote (the Ray engine's files by their manifest)."""

from __future__ import annotations

from pathlib import Path

import pytest

from serval.batch.errors import BatchOutputError
from serval.batch.manifest import prepare_output

JOB = {"model": "/repo/m", "version": 1}


def test_overwrite_removes_the_listed_parts_and_keeps_other_files(tmp_path: Path) -> None:
    out = tmp_path / "out"
    manifest = prepare_output(out, JOB, resume=False, overwrite=False)
    (out / "f00d_000000_000000.parquet").write_bytes(b"a Ray part")
    (out / "part-00003.parquet.partial").write_bytes(b"half")
    (out / "notes.txt").write_text("mine")
    manifest.record("f00d_000000_000000.parquet", {"engine": "ray"})

    with pytest.raises(BatchOutputError, match="exists and is not empty"):
        prepare_output(out, JOB, resume=False, overwrite=False)
    fresh = prepare_output(out, {**JOB, "version": 2}, resume=False, overwrite=True)

    assert sorted(p.name for p in out.iterdir()) == ["_manifest.json", "notes.txt"]
    assert fresh.parts == {}


def test_resume_removes_partial_parts_and_refuses_a_folder_without_manifest(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out"
    prepare_output(out, JOB, resume=False, overwrite=False)
    (out / "part-00000.parquet.partial").write_bytes(b"half")
    prepare_output(out, JOB, resume=True, overwrite=False)
    assert not (out / "part-00000.parquet.partial").exists()

    other = tmp_path / "other"
    other.mkdir()
    (other / "data.csv").write_text("a\n1\n")
    with pytest.raises(BatchOutputError, match=r"has no _manifest\.json"):
        prepare_output(other, JOB, resume=True, overwrite=False)
