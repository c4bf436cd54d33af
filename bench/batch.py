"""Batch serving (``serval batch``) against its targets (issue 15), all ratios from one run:

1. ``local``: the local engine on the ``mlp`` bench model over ``--rows`` Parquet rows (a key
   column and ``x`` as a fixed-size list column), end to end (read, score, write), against
   ``onnxruntime``'s limit: the same model in-process on the same rows held in memory, at its
   best batch size of ``--ort-batches``, with the same intra-op threads. Target >= 0.8.
2. ``ray``: the Ray engine on the same file (a local Ray started by the job), against ``local``.
   Target >= 0.5.
3. ``rss``: peak RSS of ``serval batch`` (a subprocess) scoring ``--rss-rows`` rows of ``tiny``.
   Target < 1 GB at 10,000,000 rows.
4. ``batch-rows``: the local engine's rows/s at several ``--batch-rows`` (for the default).

Usage: python bench/batch.py [--rows 1000000] [--rss-rows 10000000] [--threads N] [--skip-ray]
The input files are written once under --work (default /tmp/serval-bench-batch) and reused.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.models import INPUT_NAME, MODELS, OUTPUT_NAME, build  # noqa: E402
from serval.batch import BatchJob, score  # noqa: E402
from serval.batch.job import Engine  # noqa: E402

CHUNK_ROWS = 50_000


def write_repository(root: Path, name: str, threads: int) -> Path:
    """The bench model with no batching section (a batch job sends its own batches) and the
    intra-op threads the baseline gets."""
    folder = root / name / "1"
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(build(name), folder / "model.onnx")
    (root / name / "model.yaml").write_text(f"runtime_options:\n  intra_op_threads: {threads}\n")
    return root / name


def write_rows(path: Path, name: str, rows: int) -> Path:
    """``rows`` seeded rows of ``name``'s input as Parquet, written in chunks (never all in
    memory): ``id`` and ``x`` (fixed-size list of the model's features)."""
    if path.is_file() and pq.ParquetFile(path).metadata.num_rows == rows:
        return path
    features = MODELS[name].features
    rng = np.random.default_rng(11)
    schema = pa.schema([("id", pa.int64()), ("x", pa.list_(pa.float32(), features))])
    with pq.ParquetWriter(path, schema) as writer:
        for start in range(0, rows, CHUNK_ROWS):
            count = min(CHUNK_ROWS, rows - start)
            x = rng.standard_normal((count, features), dtype=np.float32)
            writer.write_table(
                pa.table(
                    {
                        "id": np.arange(start, start + count, dtype=np.int64),
                        "x": pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), features),
                    },
                    schema=schema,
                ),
                row_group_size=CHUNK_ROWS,
            )
    return path


class OnnxruntimeLimit:
    """onnxruntime's rows/s on in-memory rows at each batch size (the same session for every
    round; noise on a shared machine only ever slows a round, so the best round counts)."""

    def __init__(self, model: Path, rows: int, threads: int) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        self._session = ort.InferenceSession(
            str(model), options, providers=["CPUExecutionProvider"]
        )
        features = self._session.get_inputs()[0].shape[1]
        self._data = np.random.default_rng(3).standard_normal((rows, features), dtype=np.float32)
        self._session.run([OUTPUT_NAME], {INPUT_NAME: self._data[:256]})  # warm-up

    def rate(self, batch: int) -> float:
        rows = len(self._data)
        started = time.perf_counter()
        for start in range(0, rows, batch):
            self._session.run([OUTPUT_NAME], {INPUT_NAME: self._data[start : start + batch]})
        return rows / (time.perf_counter() - started)


def local_rate(
    model: Path,
    data: Path,
    out: Path,
    threads: int,
    batch_rows: int,
    engine: Engine = "local",
) -> float:
    job = BatchJob(
        model,
        str(data),
        out,
        keys=("id",),
        threads=threads,
        batch_rows=batch_rows,
        overwrite=True,
        engine=engine,
    )
    summary = score(job)
    return summary.rows_per_s


# Runs ``serval batch`` and prints the process's own peak RSS (VmHWM) at exit. Not the
# parent's getrusage(RUSAGE_CHILDREN): Linux carries a process's peak across fork and exec, so
# a child would be charged with this (large) process's memory.
REPORT_PEAK = """
import runpy, sys
try:
    sys.argv = ["serval", *sys.argv[1:]]
    runpy.run_module("serval", run_name="__main__")
finally:
    peak = next(l for l in open("/proc/self/status") if l.startswith("VmHWM"))
    print(peak.split()[1], file=sys.stdout, flush=True)
"""


def peak_rss(model: Path, data: Path, out: Path, batch_rows: int) -> tuple[float, float]:
    """Peak RSS (MB) and seconds of ``serval batch`` in a process of its own."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), *sys.path])}
    options = ["--input", str(data), "--output", str(out), "--key", "id", "--overwrite"]
    options += ["--no-progress", "--batch-rows", str(batch_rows)]
    command = [sys.executable, "-c", REPORT_PEAK, "batch", str(model), *options]
    started = time.perf_counter()
    done = subprocess.run(
        command, check=True, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    seconds = time.perf_counter() - started
    return int(done.stdout.split()[-1]) / 1024, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--ort-rows", type=int, default=100_000, help="rows held in memory")
    parser.add_argument("--rss-rows", type=int, default=10_000_000)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--batch-rows", type=int, default=4096)
    parser.add_argument("--ort-batches", default="256,1024,4096,16384")
    parser.add_argument("--sweep", default="", help="batch rows to compare, e.g. 1024,16384")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; best counts")
    parser.add_argument("--skip-ray", action="store_true")
    parser.add_argument("--work", type=Path, default=Path("/tmp/serval-bench-batch"))
    args = parser.parse_args()
    work: Path = args.work
    work.mkdir(parents=True, exist_ok=True)
    mlp = write_repository(work / "repo", "mlp", args.threads)
    tiny = write_repository(work / "repo", "tiny", args.threads)
    data = write_rows(work / f"mlp-{args.rows}.parquet", "mlp", args.rows)
    print(
        f"threads {args.threads}, {args.rows:,} rows of mlp, cores {os.cpu_count()}, "
        f"best of {args.rounds} interleaved rounds"
    )

    batches = [int(b) for b in args.ort_batches.split(",")]
    sizes = [args.batch_rows, *(int(r) for r in args.sweep.split(",") if r)]
    limit = OnnxruntimeLimit(mlp / "1" / "model.onnx", min(args.ort_rows, args.rows), args.threads)
    ort_best = dict.fromkeys(batches, 0.0)
    local_best = dict.fromkeys(sizes, 0.0)
    for _ in range(args.rounds):
        for batch in batches:
            ort_best[batch] = max(ort_best[batch], limit.rate(batch))
        for rows in sizes:
            rate = local_rate(mlp, data, work / "out-local", args.threads, rows)
            local_best[rows] = max(local_best[rows], rate)
    for batch, rate in ort_best.items():
        print(f"onnxruntime in-process, batch {batch:>6}: {rate:>10,.0f} rows/s")
    best = max(ort_best, key=lambda b: ort_best[b])
    top = ort_best[best]
    for rows, rate in local_best.items():
        print(
            f"serval batch local, --batch-rows {rows:>6}: {rate:>10,.0f} rows/s = "
            f"{rate / top:.2f} x onnxruntime's best (batch {best}); target >= 0.8"
        )
    local = local_best[args.batch_rows]
    if args.rss_rows:
        tiny_data = write_rows(work / f"tiny-{args.rss_rows}.parquet", "tiny", args.rss_rows)
        peak, seconds = peak_rss(tiny, tiny_data, work / "out-rss", args.batch_rows)
        print(
            f"peak RSS of serval batch scoring {args.rss_rows:,} rows of tiny: {peak:,.0f} MB "
            f"({args.rss_rows / seconds:,.0f} rows/s, process start included); target < 1024 MB"
        )
    if not args.skip_ray:
        ray = local_rate(mlp, data, work / "out-ray", args.threads, args.batch_rows, "ray")
        print(
            f"serval batch ray (local Ray, start-up included): {ray:,.0f} rows/s = "
            f"{ray / local:.2f} x local; target >= 0.5"
        )
    for name in ("out-local", "out-ray", "out-rss"):
        shutil.rmtree(work / name, ignore_errors=True)


if __name__ == "__main__":
    main()
