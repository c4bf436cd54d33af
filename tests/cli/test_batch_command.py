"""``serval batch`` as a user runs it: a job stopped by SIGTERM part-way and rerun with
``--resume`` writes exactly what an uninterrupted run writes; mistakes are one line naming the
column or option, never a traceback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.batch.data import repository, rows, write_parts

# Slow enough that SIGTERM lands part-way: each call sleeps, and there are many parts.
SLOW_MODEL = """
import time

from serval import ServingModel, TensorInfo


class Model(ServingModel):
    inputs = [TensorInfo("x", "FP32", [-1, 3])]
    outputs = [TensorInfo("y", "FP32", [-1])]

    def predict(self, data):
        time.sleep(0.01)
        return {"y": data["x"].sum(axis=1) * 2.0}
"""
PARTS = 40
DEADLINE_S = 60.0


def serval(*args: str, **popen: object) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.Popen(  # type: ignore[call-overload, no-any-return]
        [sys.executable, "-m", "serval", "batch", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        **popen,
    )


def finished(*args: str) -> tuple[int, str]:
    process = serval(*args)
    output, _ = process.communicate(timeout=DEADLINE_S)
    return process.returncode, output


def written_parts(output: Path) -> int:
    try:
        return len(json.loads((output / "_manifest.json").read_text())["parts"])
    except (OSError, ValueError, KeyError):
        return 0


def read(folder: Path) -> pa.Table:
    return pa.concat_tables(pq.read_table(p) for p in sorted(folder.glob("part-*.parquet")))


@pytest.fixture
def slow_job(tmp_path: Path) -> tuple[Path, Path]:
    folder = tmp_path / "repo" / "slow" / "1"
    folder.mkdir(parents=True)
    (folder / "model.py").write_text(SLOW_MODEL)
    write_parts(rows(PARTS * 100), tmp_path / "in", parts=PARTS)
    return tmp_path / "repo" / "slow", tmp_path / "in"


def test_sigterm_then_resume_gives_the_output_of_an_uninterrupted_run(
    slow_job: tuple[Path, Path], tmp_path: Path
) -> None:
    model, data = slow_job
    options = ["--input", str(data), "--key", "id", "--columns", "a,b,c", "--batch-rows", "10"]
    output = tmp_path / "out"
    job = serval(str(model), *options, "--output", str(output), "--no-progress")
    deadline = time.monotonic() + DEADLINE_S
    while written_parts(output) < 2 and job.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    job.send_signal(signal.SIGTERM)
    said, _ = job.communicate(timeout=DEADLINE_S)

    assert job.returncode == 130, said
    assert "rerun with --resume" in said
    interrupted = written_parts(output)
    assert 2 <= interrupted < PARTS
    assert not list(output.glob("*.partial")), "the part being written is removed"

    code, said = finished(str(model), *options, "--output", str(output), "--resume")
    assert code == 0, said
    assert f"{PARTS - interrupted} part(s) written, {interrupted} skipped" in said
    code, said = finished(str(model), *options, "--output", str(tmp_path / "clean"))
    assert code == 0, said
    resumed, clean = read(output), read(tmp_path / "clean")
    assert resumed.equals(clean)
    assert resumed.num_rows == PARTS * 100
    assert len(set(resumed.column("id").to_pylist())) == PARTS * 100


def test_mistakes_are_one_line_naming_the_column_never_a_traceback(tmp_path: Path) -> None:
    repo = repository(tmp_path / "repo")
    pq.write_table(rows(10), tmp_path / "in.parquet")
    base = [str(repo / "lin"), "--input", str(tmp_path / "in.parquet")]

    code, said = finished(*base, "--output", str(tmp_path / "o1"), "--key", "id")
    assert code == 2
    assert "input 'x' takes 3 numeric columns" in said
    assert "a, b, c, note" in said  # the columns found
    assert "Traceback" not in said
    code, said = finished(*base, "--output", str(tmp_path / "o2"), "--columns", "a,b,zz")
    assert (code, "Traceback" in said) == (2, False)
    assert "--columns: column(s) 'zz' not found" in said
    code, said = finished(*base, "--output", str(tmp_path / "o3"), "--map", "x=a,b,note")
    assert "column 'note'" in said and "type string" in said and "takes numbers" in said
    assert not (tmp_path / "o3").exists()  # refused before the output is touched
