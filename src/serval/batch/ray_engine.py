"""The Ray engine (``--engine ray``, the ``batch-ray`` extra): the same job on Ray Data.

``read_parquet`` / ``read_csv`` / ``read_json`` over the input parts, ``map_batches`` with
``RayScorer`` (a class: each actor loads the model folder once, as the local engine does, and
scores with the same ``BatchScorer``), then ``write_parquet`` / ``write_csv`` / ``write_json``
into the output folder. A local Ray is started for the job (all the cores, no dashboard) and
shut down after, unless ``--ray-address`` names a running cluster; there the model folder and
the files must be at the same paths on every node (a shared file system).

Ray does not keep row order, so a job on Ray needs ``--key``; it writes Ray's own part files
(not one per input part) and cannot ``--resume``. Ray is imported only here.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from serval.batch.errors import BatchInputError
from serval.batch.job import BatchJob, PreparedJob, prepare
from serval.batch.manifest import prepare_output
from serval.batch.model import BatchModel
from serval.batch.precomputed_sink import PrecomputedSink, open_precomputed_sink
from serval.batch.progress import JobSummary, Progress
from serval.batch.scoring import BatchScorer
from serval.batch.sinks import flat_table


class RayScorer:
    """What each Ray actor runs: the model loaded once, then ``BatchScorer`` per batch."""

    def __init__(self, job: BatchJob, prepared: PreparedJob, threads: int) -> None:
        self._job = job
        self._format = prepared.format
        self._model = BatchModel(job.model, job.version, threads).open()
        self._scorer = BatchScorer(self._model, prepared.mapping, job.on_error)
        self._sink: PrecomputedSink | None = open_precomputed_sink(job, self._model)

    def __call__(self, table: pa.Table) -> pa.Table:
        results = [
            self._scorer.score(batch, 0, "a Ray block")
            for batch in table.combine_chunks().to_batches()
            if batch.num_rows
        ]
        out = pa.concat_tables(results) if results else self._empty(table)
        if self._sink is not None:
            self._sink.write(out)
        return flat_table(out) if self._format == "csv" else out

    def _empty(self, table: pa.Table) -> pa.Table:
        schema = table.schema
        empty = pa.RecordBatch.from_arrays([pa.array([], f.type) for f in schema], schema=schema)
        return self._scorer.empty_table(empty)


def run_on_ray(job: BatchJob, progress: Progress) -> JobSummary:
    import ray  # noqa: PLC0415 - the batch-ray extra, only for --engine ray

    if not job.keys:
        raise BatchInputError(
            "--engine ray needs --key: Ray does not keep the rows' order, so each output row "
            "is matched to its input row by its key"
        )
    if job.resume:
        raise BatchInputError("--resume works with the local engine; Ray writes its own parts")
    started = time.monotonic()
    with BatchModel(job.model, job.version, 1) as model:  # the mapping, checked before work
        prepared = prepare(job, model)
        manifest = prepare_output(
            job.output, prepared.describe(job, model), resume=False, overwrite=job.overwrite
        )
    own_ray = not ray.is_initialized()
    if own_ray:
        if job.ray_address is not None:
            ray.init(address=job.ray_address, logging_level=logging.WARNING)
        else:
            ray.init(
                num_cpus=os.cpu_count() or 1,
                include_dashboard=False,
                logging_level=logging.WARNING,
                log_to_driver=False,
            )
    try:
        _quiet(ray)
        progress.start(None)
        dataset = _read(ray, prepared)
        cpus = int(ray.cluster_resources().get("CPU", 1))  # type: ignore[no-untyped-call]
        # One CPU is left to reading and writing; each actor's model gets the CPUs over the
        # actors (2 cores: one actor, two threads; 16: fifteen actors, one thread each).
        actors = max(1, cpus - 1)
        threads = job.threads or max(1, cpus // actors)
        scored = dataset.map_batches(
            RayScorer,
            fn_constructor_kwargs={"job": job, "prepared": prepared, "threads": threads},
            batch_size=prepared.call_rows,
            batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=actors),
            num_cpus=1,
        )
        _write(scored, prepared.format, job.output)
    finally:
        if own_ray:
            ray.shutdown()
    files = sorted(p for p in job.output.iterdir() if p.is_file() and p.name != manifest.path.name)
    rows = sum(_rows(path, prepared.format) for path in files)
    for path in files:
        manifest.parts[path.name] = {"engine": "ray"}
    manifest.save()
    progress.advance(rows)  # Ray shows its own progress while it runs
    progress.finish()
    return JobSummary(
        rows=rows,
        parts_written=len(files),
        parts_skipped=0,
        seconds=time.monotonic() - started,
        output=str(job.output),
    )


def _quiet(ray: Any) -> None:
    """Ray Data's progress bars on a terminal only; its periodic INFO lines off."""
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = sys.stderr.isatty()
    logging.getLogger("ray.data").setLevel(logging.WARNING)


def _read(ray: Any, prepared: PreparedJob) -> Any:
    paths = [str(part.path.resolve()) for part in prepared.parts]
    columns = prepared.mapping.read_columns
    kind = prepared.parts[0].format
    if any(part.format != kind for part in prepared.parts):
        raise BatchInputError("--engine ray reads input parts of one format at a time")
    if kind == "parquet":
        return ray.data.read_parquet(paths).select_columns(columns)
    if kind == "csv":
        return ray.data.read_csv(paths, file_extensions=None).select_columns(columns)
    return ray.data.read_json(paths, file_extensions=None).select_columns(columns)


def _write(dataset: Any, fmt: str, output: Path) -> None:
    if fmt == "csv":
        dataset.write_csv(str(output))
    elif fmt == "json":
        dataset.write_json(str(output))
    else:
        dataset.write_parquet(str(output))


def _rows(path: Path, fmt: str) -> int:
    if fmt == "parquet":
        return int(pq.ParquetFile(path).metadata.num_rows)
    with path.open("rb") as file:
        lines = sum(1 for _ in file)
    return lines - 1 if fmt == "csv" else lines
