"""``serval monitor export``'s Parquet file from a real SQLite store (and PostgreSQL's): one
row per predicted row, ground truth joined by id and by key, column types, several row groups
(streamed), feature columns named by the reference, and the CLI's answers to what a user can
get wrong."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from serval.core.types import Tensor
from serval.evaluation.recording.tensor_log import encode_tensors
from serval.evaluation.reporting.export import NothingLoggedError, export_predictions
from serval.storage.evaluation import EvaluationStore, GroundTruth, LoggedPrediction
from serval.storage.sqlite_evaluation import SqliteEvaluationStore
from tests.storage.evaluation_stores import store_factory

T0 = 1_800_000_000.0


def prediction(
    request_id: str,
    inputs: dict[str, np.ndarray[Any, Any]],
    outputs: dict[str, np.ndarray[Any, Any]],
    *,
    version: int = 1,
    at: float = T0,
    keys: tuple[str, ...] | None = None,
    model: str = "churn",
) -> LoggedPrediction:
    rows = len(next(iter(inputs.values())))
    return LoggedPrediction(
        model=model,
        version=version,
        request_id=request_id,
        timestamp=at,
        role="primary",
        latency_ms=1.5,
        rows=rows,
        keys=keys,
        inputs=encode_tensors(Tensor.from_numpy(n, a) for n, a in inputs.items()),
        outputs=encode_tensors(Tensor.from_numpy(n, a) for n, a in outputs.items()),
    )


def truth(value: object, *, request_id: str | None = None, key: str | None = None) -> GroundTruth:
    return GroundTruth("churn", request_id, key, orjson.dumps(value), T0 + 60)


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_rows_are_joined_with_ground_truth_by_id_and_by_key(kind: str, tmp_path: Path) -> None:
    with store_factory(kind, tmp_path) as open_store:
        joined_by_id_and_key(open_store(), tmp_path)


def joined_by_id_and_key(store: EvaluationStore, tmp_path: Path) -> None:
    x = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], np.float32)
    store.write_predictions(
        [
            prediction(
                "a", {"x": x}, {"label": np.array([1, 0]), "city": np.array([b"Oslo", b"Rome"])}
            ),
            prediction(
                "b",
                {"x": x[:1]},
                {"label": np.array([1]), "city": np.array([b"Bern"])},
                version=2,
                at=T0 + 1,
            ),
            prediction(
                "c",
                {"x": x},
                {"label": np.array([0, 0]), "city": np.array([b"Kyiv", b"Riga"])},
                version=2,
                at=T0 + 2,
                keys=("user-1", "user-2"),
            ),
        ]
    )
    store.write_ground_truth(
        [truth([1, 1], request_id="a"), truth(0, request_id="b"), truth(1, key="user-2")]
    )
    out = tmp_path / "data.parquet"

    summary = export_predictions(store, "churn", out)

    table = pq.read_table(out)
    assert (summary.requests, summary.rows, summary.labelled) == (3, 5, 4)
    assert table.num_rows == 5
    schema = table.schema
    assert schema.field("timestamp").type == pa.timestamp("us", tz="UTC")
    assert schema.field("x").type == pa.list_(pa.float32(), 3)
    assert schema.field("label").type == pa.int64()
    assert schema.field("city").type == pa.string()
    assert schema.field("ground_truth").type == pa.int64()
    rows = table.to_pylist()
    assert [row["request_id"] for row in rows] == ["a", "a", "b", "c", "c"]
    assert [row["version"] for row in rows] == [1, 1, 2, 2, 2]
    assert [row["key"] for row in rows] == [None, None, None, "user-1", "user-2"]
    assert [row["ground_truth"] for row in rows] == [1, 1, 0, None, 1]
    assert [row["labelled_at"] is not None for row in rows] == [True, True, True, False, True]
    assert rows[0]["x"] == [1.0, 2.0, 3.0]
    assert rows[3]["city"] == "Kyiv"
    assert rows[2]["timestamp"].timestamp() == pytest.approx(T0 + 1)


def test_export_streams_one_row_group_per_page(tmp_path: Path) -> None:
    store = SqliteEvaluationStore(tmp_path / "evaluation.sqlite3")
    store.write_predictions(
        [
            prediction(
                f"r{i}",
                {"age": np.array([float(i)]), "plan": np.array([b"basic"])},
                {"y": np.array([i * 0.5])},
                at=T0 + i,
            )
            for i in range(25)
        ]
    )
    store.write_ground_truth([truth(i * 0.25, request_id=f"r{i}") for i in range(0, 25, 5)])
    out = tmp_path / "data.parquet"

    summary = export_predictions(store, "churn", out, batch=10)

    metadata = pq.ParquetFile(out).metadata
    assert metadata.num_row_groups == summary.row_groups == 3
    table = pq.read_table(out)
    assert table.schema.field("age").type == pa.float64()
    assert table.schema.field("plan").type == pa.string()
    assert table.schema.field("ground_truth").type == pa.float64()
    assert table.column("age").to_pylist() == [float(i) for i in range(25)]
    labelled = [v for v in table.column("ground_truth").to_pylist() if v is not None]
    assert labelled == [i * 0.25 for i in range(0, 25, 5)]


def test_mixed_ground_truth_is_json_text_and_clashing_names_are_prefixed(tmp_path: Path) -> None:
    store = SqliteEvaluationStore(tmp_path / "evaluation.sqlite3")
    store.write_predictions(
        [
            prediction("a", {"key": np.array([1.0])}, {"key": np.array([2.0])}),
            prediction("b", {"key": np.array([3.0])}, {"key": np.array([4.0])}, at=T0 + 1),
        ]
    )
    store.write_ground_truth([truth("yes", request_id="a"), truth(2, request_id="b")])
    out = tmp_path / "data.parquet"

    export_predictions(store, "churn", out)

    table = pq.read_table(out)
    assert {"input_key", "output_key", "key"} <= set(table.column_names)
    assert table.column("ground_truth").to_pylist() == ['"yes"', "2"]


def test_nothing_logged_writes_no_file(tmp_path: Path) -> None:
    store = SqliteEvaluationStore(tmp_path / "evaluation.sqlite3")
    out = tmp_path / "data.parquet"
    with pytest.raises(NothingLoggedError, match="'ghost'"):
        export_predictions(store, "ghost", out)
    assert not out.exists()


def serval(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "serval", "monitor", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_cli_exports_and_explains_mistakes(tmp_path: Path) -> None:
    state = tmp_path / "state"
    out = tmp_path / "data.parquet"

    missing = serval("export", "churn", "--out", str(out), "--state-dir", str(state))
    assert missing.returncode == 2
    assert "no evaluation store" in missing.stderr and "Traceback" not in missing.stderr

    store = SqliteEvaluationStore(state / "evaluation.sqlite3")
    store.write_predictions([prediction("a", {"x": np.array([1.0])}, {"y": np.array([1])})])
    store.close()

    wrong_suffix = serval(
        "export", "churn", "--out", str(tmp_path / "d.txt"), "--state-dir", str(state)
    )
    assert wrong_suffix.returncode == 2
    assert "--out" in wrong_suffix.stderr and ".parquet" in wrong_suffix.stderr

    unknown = serval("export", "ghost", "--out", str(out), "--state-dir", str(state))
    assert unknown.returncode == 1
    assert "'ghost'" in unknown.stderr and "nothing logged" in unknown.stderr
    assert "Traceback" not in unknown.stderr

    done = serval("export", "churn", "--out", str(out), "--state-dir", str(state))
    assert done.returncode == 0, done.stderr
    assert "1 rows" in done.stdout
    assert pq.read_table(out).num_rows == 1

    bad_store = serval("export", "churn", "--out", str(out), "--store", "mysql://x")
    assert bad_store.returncode == 2
    assert "unsupported scheme" in bad_store.stderr


def test_cli_names_feature_columns_as_the_reference_does(tmp_path: Path) -> None:
    state, folder = tmp_path / "state", tmp_path / "models" / "churn"
    folder.mkdir(parents=True)
    (folder / "model.yaml").write_text("monitoring: {reference: reference.parquet}\n")
    reference = {"tenure": [1.0, 2.0], "charges": [3.0, 4.0], "age": [5.0, 6.0], "label": [0, 1]}
    pq.write_table(pa.table(reference), folder / "reference.parquet")
    x = np.array([[12.0, 70.5, 33.0], [3.0, 20.0, 51.0]], np.float32)
    store = SqliteEvaluationStore(state / "evaluation.sqlite3")
    store.write_predictions([prediction("a", {"x": x}, {"label": np.array([0, 1])})])
    store.close()
    out = tmp_path / "data.parquet"

    done = serval(
        "export",
        "churn",
        "--out",
        str(out),
        "--state-dir",
        str(state),
        "--repository",
        str(tmp_path / "models"),
    )

    assert done.returncode == 0, done.stderr
    table = pq.read_table(out)
    assert "x" not in table.column_names
    assert table.column("tenure").to_pylist() == [12.0, 3.0]
    assert table.column("age").to_pylist() == [33.0, 51.0]
    assert table.schema.field("charges").type == pa.float32()
