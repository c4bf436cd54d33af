"""``--to``: a batch job also stores each row's outputs under its key, in the machine's real
Redis and in SQLite; the reader the server uses finds them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from serval.batch import BatchJob, score
from serval.batch.errors import BatchInputError
from serval.storage.precomputed import open_precomputed_store
from tests.batch.data import repository, rows
from tests.redis_keys import redis_prefix

REDIS = "redis://127.0.0.1:6379/15"


@pytest.fixture
def prefix() -> Iterator[str]:
    with redis_prefix(REDIS) as prefix:
        yield prefix


@pytest.mark.parametrize("store", ["redis", "sqlite"])
def test_each_row_is_stored_under_its_key(tmp_path: Path, prefix: str, store: str) -> None:
    repo = repository(tmp_path / "repo")
    table = rows(300)
    pq.write_table(table, tmp_path / "in.parquet")
    url = REDIS if store == "redis" else f"sqlite:///{tmp_path}/answers.db"

    score(
        BatchJob(
            repo / "lin",
            str(tmp_path / "in.parquet"),
            tmp_path / "out",
            keys=("id",),
            columns=("a", "b", "c"),
            to=url,
            redis_prefix=prefix,
            batch_rows=64,
        )
    )

    out = pq.read_table(tmp_path / "out")
    reader = open_precomputed_store(url, prefix)
    try:
        for row in (0, 150, 299):
            key = out.column("id")[row].as_py()
            answer = reader.get("lin", str(key))
            assert answer is not None
            assert (answer.model, answer.version) == ("lin", 2)
            np.testing.assert_array_equal(answer.outputs["y"], out.column("y")[row].as_py())
        assert reader.get("lin", "no-such-id") is None
    finally:
        reader.close()


def test_to_needs_a_key(tmp_path: Path) -> None:
    with pytest.raises(BatchInputError, match=r"--to: .*name the key column"):
        BatchJob(tmp_path, "in", tmp_path / "out", to="sqlite:///x.db")
