"""``--engine ray`` gives the local engine's rows: the same data scored on a local Ray started
by the job (2 CPUs), compared by key with a local run. One test: Ray starts slowly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from serval.batch import BatchJob, score
from serval.batch.errors import BatchInputError
from tests.batch.data import repository, rows, write_parts

pytest.importorskip("ray.data")


def by_key(folder: Path) -> pa.Table:
    files = sorted(p for p in folder.iterdir() if p.suffix == ".parquet")
    return pa.concat_tables(pq.read_table(p) for p in files).sort_by("id")


def test_ray_engine_equals_the_local_engine(tmp_path: Path) -> None:
    repo = repository(tmp_path / "repo")
    write_parts(rows(3_000), tmp_path / "in", parts=3)
    job = BatchJob(
        repo / "lin",
        str(tmp_path / "in"),
        tmp_path / "local",
        keys=("id",),
        columns=("a", "b", "c"),
        batch_rows=500,
    )

    score(job)
    summary = score(BatchJob(**{**job.__dict__, "output": tmp_path / "ray", "engine": "ray"}))

    assert summary.rows == 3_000
    local, on_ray = by_key(tmp_path / "local"), by_key(tmp_path / "ray")
    assert on_ray.column_names == local.column_names
    assert on_ray.column("id").equals(local.column("id"))
    np.testing.assert_array_equal(
        np.stack(on_ray.column("y").to_numpy()), np.stack(local.column("y").to_numpy())
    )
    assert on_ray.column("version").equals(local.column("version"))


def test_ray_needs_a_key(tmp_path: Path) -> None:
    with pytest.raises(BatchInputError, match="--engine ray needs --key"):
        score(BatchJob(tmp_path, "in", tmp_path / "out", engine="ray"))
