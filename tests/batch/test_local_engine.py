"""The local engine end to end through ``serval.batch.score``: outputs equal onnxruntime run
in-process on the same rows; keys survive shuffled input over several parts; CSV and JSON
lines; a pipeline; versions; ``--on-error``; the output folder's rules."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest

from serval.batch import BatchJob, score
from serval.batch.errors import BatchOutputError, PartFailedError
from serval.core.errors import ModelLoadError
from tests.batch.data import WEIGHTS, features_of, repository, rows, run_onnx, write_parts
from tests.onnx_models import linear, write_model


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return repository(tmp_path_factory.mktemp("repo"))


def read_parts(folder: Path) -> pa.Table:
    return pa.concat_tables(pq.read_table(p) for p in sorted(folder.glob("part-*.parquet")))


def test_parquet_output_equals_onnxruntime_and_keys_survive_shuffled_parts(
    repo: Path, tmp_path: Path
) -> None:
    table = rows(2_000)
    write_parts(table, tmp_path / "in", parts=4)
    job = BatchJob(
        repo / "lin",
        str(tmp_path / "in"),
        tmp_path / "out",
        keys=("id",),
        columns=("a", "b", "c"),
        batch_rows=128,
    )

    summary = score(job)

    assert (summary.rows, summary.parts_written) == (2_000, 4)
    out = read_parts(tmp_path / "out")
    assert out.column_names == ["id", "y", "model", "version"]
    assert out.column("id").to_pylist() == table.column("id").to_pylist()  # order within parts
    expected = run_onnx(repo / "lin" / "2" / "model.onnx", "y", {"x": features_of(table)})
    np.testing.assert_array_equal(
        np.stack(out.column("y").to_numpy(zero_copy_only=False)), expected
    )
    assert set(out.column("model").to_pylist()) == {"lin"}
    assert set(out.column("version").to_pylist()) == {2}
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "_manifest.json",
        *(f"part-{i:05d}.parquet" for i in range(4)),
    ]


def test_without_a_key_a_row_index_is_written_and_version_is_chosen(
    repo: Path, tmp_path: Path
) -> None:
    table = rows(300).select(["a", "b", "c"])
    pq.write_table(table, tmp_path / "x.parquet")

    score(BatchJob(repo / "lin", str(tmp_path / "x.parquet"), tmp_path / "out", version=1))

    out = read_parts(tmp_path / "out")
    assert out.column("row").to_pylist() == list(range(300))
    expected = run_onnx(repo / "lin" / "1" / "model.onnx", "y", {"x": features_of(table)})
    np.testing.assert_array_equal(
        np.stack(out.column("y").to_numpy(zero_copy_only=False)), expected
    )
    assert set(out.column("version").to_pylist()) == {1}


@pytest.mark.parametrize(("fmt", "suffix"), [("csv", "csv"), ("json", "jsonl")])
def test_csv_and_json_lines_in_and_out(repo: Path, tmp_path: Path, fmt: str, suffix: str) -> None:
    table = rows(500)
    write_parts(table, tmp_path / "in", parts=2, fmt=suffix)
    output = tmp_path / f"out.{suffix}"

    score(
        BatchJob(
            repo / "lin",
            str(tmp_path / "in" / f"*.{suffix}"),
            output,
            keys=("id",),
            columns=("a", "b", "c"),
        )
    )

    expected = run_onnx(repo / "lin" / "2" / "model.onnx", "y", {"x": features_of(table)})[:, 0]
    files = sorted(output.glob(f"part-*.{suffix}"))
    assert len(files) == 2
    if fmt == "csv":
        out = pa.concat_tables(pa_csv.read_csv(f) for f in files)
        ids, values = out.column("id").to_pylist(), out.column("y_0").to_numpy()
    else:
        lines = [json.loads(line) for f in files for line in f.read_text().splitlines()]
        ids, values = [r["id"] for r in lines], np.array([r["y"][0] for r in lines])
    assert ids == table.column("id").to_pylist()
    np.testing.assert_allclose(values, expected, rtol=1e-6)


def test_a_pipeline_scores_as_its_steps_in_process(repo: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    raw = rng.normal(size=(400, 2)).astype(np.float32)
    table = pa.table(
        {
            "key": [f"k{i}" for i in range(400)],
            "raw": pa.FixedSizeListArray.from_arrays(pa.array(raw.reshape(-1)), 2),
        }
    )
    pq.write_table(table, tmp_path / "in.parquet")

    score(BatchJob(repo / "p", str(tmp_path / "in.parquet"), tmp_path / "out", keys=("key",)))

    out = read_parts(tmp_path / "out")
    scaled = run_onnx(repo / "scaler" / "1" / "model.onnx", "y", {"x": raw})
    probabilities = run_onnx(
        repo / "classifier" / "1" / "model.onnx", "probabilities", {"x": scaled}
    )
    labels = run_onnx(repo / "classifier" / "1" / "model.onnx", "label", {"x": scaled})
    assert out.column("key").to_pylist() == table.column("key").to_pylist()
    got = np.stack(out.column("probabilities").to_numpy(zero_copy_only=False))
    np.testing.assert_array_equal(got, probabilities)
    np.testing.assert_array_equal(out.column("label").to_numpy(), labels)


FAILING_MODEL = """
import numpy as np

from serval import ServingModel, TensorInfo


class Model(ServingModel):
    inputs = [TensorInfo("x", "FP32", [-1, 3])]
    outputs = [TensorInfo("y", "FP32", [-1])]

    def predict(self, data):
        x = data["x"]
        if (x[:, 0] > 2.0).any():
            raise ValueError("a is too large")
        return {"y": x.sum(axis=1)}
"""


@pytest.fixture
def failing_repo(tmp_path: Path) -> Path:
    folder = tmp_path / "repo" / "picky" / "1"
    folder.mkdir(parents=True)
    (folder / "model.py").write_text(FAILING_MODEL)
    return tmp_path / "repo"


def test_on_error_skip_writes_the_failing_rows_with_an_error(
    failing_repo: Path, tmp_path: Path
) -> None:
    table = rows(1_000)
    pq.write_table(table, tmp_path / "in.parquet")
    bad = features_of(table)[:, 0] > 2.0
    assert 0 < bad.sum() < 100

    score(
        BatchJob(
            failing_repo / "picky",
            str(tmp_path / "in.parquet"),
            tmp_path / "out",
            keys=("id",),
            columns=("a", "b", "c"),
            on_error="skip",
            batch_rows=256,
        )
    )

    out = read_parts(tmp_path / "out")
    assert out.column("id").to_pylist() == table.column("id").to_pylist()
    errors = out.column("error").to_pylist()
    assert [e is not None for e in errors] == bad.tolist()
    assert "a is too large" in next(e for e in errors if e is not None)
    y = out.column("y").to_numpy(zero_copy_only=False)
    np.testing.assert_allclose(y[~bad], features_of(table)[~bad].sum(axis=1), rtol=1e-6)


def test_on_error_stop_names_the_part_and_keeps_what_was_written(
    failing_repo: Path, tmp_path: Path
) -> None:
    table = rows(1_000)
    features = features_of(table)
    first_bad = int(np.flatnonzero(features[:, 0] > 2.0)[0])
    good = table.slice(0, first_bad)
    write_parts(good, tmp_path / "in", parts=1)
    pq.write_table(table, tmp_path / "in" / "in-99.parquet")
    job = BatchJob(
        failing_repo / "picky",
        str(tmp_path / "in"),
        tmp_path / "out",
        keys=("id",),
        columns=("a", "b", "c"),
    )

    with pytest.raises(
        PartFailedError, match=r"in-99\.parquet: the model failed on rows .*a is too large"
    ):
        score(job)

    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "_manifest.json",
        "part-00000.parquet",
    ]
    manifest = json.loads((tmp_path / "out" / "_manifest.json").read_text())
    assert list(manifest["parts"]) == ["part-00000.parquet"]


def test_an_existing_output_is_refused_without_resume_or_overwrite(
    repo: Path, tmp_path: Path
) -> None:
    pq.write_table(rows(10), tmp_path / "in.parquet")
    job = BatchJob(
        repo / "lin",
        str(tmp_path / "in.parquet"),
        tmp_path / "out",
        keys=("id",),
        columns=("a", "b", "c"),
    )
    score(job)

    with pytest.raises(BatchOutputError, match="exists and is not empty: pass --resume"):
        score(job)
    assert score(BatchJob(**{**job.__dict__, "overwrite": True})).parts_written == 1
    resumed = score(BatchJob(**{**job.__dict__, "resume": True}))
    assert (resumed.parts_written, resumed.parts_skipped) == (0, 1)
    with pytest.raises(BatchOutputError, match=r"another job .*version"):
        score(BatchJob(**{**job.__dict__, "resume": True, "version": 1}))


def test_an_empty_part_gets_an_empty_output_part(repo: Path, tmp_path: Path) -> None:
    table = rows(20)
    write_parts(table, tmp_path / "in", parts=1)
    pq.write_table(table.slice(0, 0), tmp_path / "in" / "in-01.parquet")

    score(
        BatchJob(
            repo / "lin",
            str(tmp_path / "in"),
            tmp_path / "out",
            keys=("id",),
            columns=("a", "b", "c"),
        )
    )

    empty = pq.read_table(tmp_path / "out" / "part-00001.parquet")
    assert empty.num_rows == 0
    assert empty.schema == pq.read_table(tmp_path / "out" / "part-00000.parquet").schema


def test_a_model_that_does_not_load_says_why(tmp_path: Path) -> None:
    (tmp_path / "repo" / "broken" / "1").mkdir(parents=True)
    (tmp_path / "repo" / "broken" / "1" / "model.onnx").write_bytes(b"not onnx")
    pq.write_table(rows(5), tmp_path / "in.parquet")

    with pytest.raises(ModelLoadError, match="broken"):
        score(
            BatchJob(tmp_path / "repo" / "broken", str(tmp_path / "in.parquet"), tmp_path / "out")
        )
    assert not (tmp_path / "out").exists()


def test_a_scikit_learn_model_equals_scikit_learn_in_process(tmp_path: Path) -> None:
    pytest.importorskip("skops")
    from tests.runtimes.builders import sklearn_classifier  # noqa: PLC0415 - needs skops

    expected = sklearn_classifier(tmp_path / "repo", "clf")
    rng = np.random.default_rng(5)
    features = rng.normal(size=(700, 4))
    table = pa.table(
        {"user": [f"u{i}" for i in range(700)], **{c: features[:, i] for i, c in enumerate("abcd")}}
    )
    write_parts(table, tmp_path / "in", parts=2)

    score(
        BatchJob(tmp_path / "repo" / "clf", str(tmp_path / "in"), tmp_path / "out", keys=("user",))
    )

    out = read_parts(tmp_path / "out")
    want = expected(features)
    assert out.column("user").to_pylist() == table.column("user").to_pylist()
    assert out.column("predict").to_pylist() == want["predict"].tolist()
    got = np.stack(out.column("predict_proba").to_numpy(zero_copy_only=False))
    np.testing.assert_allclose(got, want["predict_proba"], rtol=1e-12)


def test_a_keyed_model_takes_its_key_from_the_column_and_writes_it_once(
    repo: Path, tmp_path: Path
) -> None:
    keyed = tmp_path / "repo"
    write_model(keyed, "klin", 1, linear(WEIGHTS, 0.5))
    (keyed / "klin" / "model.yaml").write_text("keys: [{name: id, datatype: INT64}]\n")
    table = rows(200)
    pq.write_table(table, tmp_path / "in.parquet")

    score(
        BatchJob(
            keyed / "klin",
            str(tmp_path / "in.parquet"),
            tmp_path / "out",
            keys=("id",),
            columns=("a", "b", "c"),
        )
    )

    out = read_parts(tmp_path / "out")
    assert out.column_names == ["id", "y", "model", "version"]
    assert out.column("id").to_pylist() == table.column("id").to_pylist()
    expected = run_onnx(keyed / "klin" / "1" / "model.onnx", "y", {"x": features_of(table)})
    np.testing.assert_array_equal(
        np.stack(out.column("y").to_numpy(zero_copy_only=False)), expected
    )
