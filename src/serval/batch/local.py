"""The local engine: the parts one after another in this process, each streamed through the
model in record batches of the rows per call.

When the model leaves a core free (``--threads`` below the cores), the next batch is read on a
thread of its own while the model works on this one. Otherwise reading stays on the calling
thread: a reader thread would only take cores from the model's threads (which spin between
calls), and on 2 cores it measured slower than reading in turn (bench/batch.py)."""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Iterator
from typing import TypeVar

import pyarrow as pa

from serval.batch.job import BatchJob, PreparedJob, prepare
from serval.batch.manifest import prepare_output
from serval.batch.model import BatchModel
from serval.batch.precomputed_sink import PrecomputedSink, open_precomputed_sink
from serval.batch.progress import JobSummary, Progress
from serval.batch.scoring import BatchScorer
from serval.batch.sinks import PartFile, part_name
from serval.batch.sources import InputPart

T = TypeVar("T")


def run_locally(job: BatchJob, progress: Progress) -> JobSummary:
    started = time.monotonic()
    with BatchModel(job.model, job.version, job.threads) as model:
        prepared = prepare(job, model)
        manifest = prepare_output(
            job.output, prepared.describe(job, model), resume=job.resume, overwrite=job.overwrite
        )
        scorer = BatchScorer(model, prepared.mapping, job.on_error)
        sink = open_precomputed_sink(job, model)
        names = [part_name(index, prepared.format) for index in range(len(prepared.parts))]
        todo = [(p, n) for p, n in zip(prepared.parts, names, strict=True) if not manifest.done(n)]
        progress.start(_total_rows([part for part, _ in todo]))
        rows = 0
        try:
            for part, name in todo:
                written = _score_part(part, name, job, prepared, scorer, sink, progress)
                manifest.record(name, {"input": str(part.path.resolve()), "rows": written})
                rows += written
        finally:
            progress.finish()
            if sink is not None:
                sink.close()
    return JobSummary(
        rows=rows,
        parts_written=len(todo),
        parts_skipped=len(names) - len(todo),
        seconds=time.monotonic() - started,
        output=str(job.output),
    )


def _score_part(
    part: InputPart,
    name: str,
    job: BatchJob,
    prepared: PreparedJob,
    scorer: BatchScorer,
    sink: PrecomputedSink | None,
    progress: Progress,
) -> int:
    """Write one output part (renamed into place once whole); returns its rows. On any error
    or interruption the partial file is removed, so nothing half-written is ever recorded."""
    file = PartFile(job.output / name, prepared.format)
    first_row = 0
    try:
        batches = part.batches(prepared.mapping.read_columns, prepared.call_rows)
        for batch in read_ahead(batches) if _spare_core(job) else batches:
            table = scorer.score(batch, first_row, str(part.path))
            file.write(table)
            if sink is not None:
                sink.write(table)
            first_row += batch.num_rows
            progress.advance(batch.num_rows)
        file.commit(_empty_schema(scorer, part, prepared))
    except BaseException:
        file.abandon()
        raise
    return file.rows


def _empty_schema(scorer: BatchScorer, part: InputPart, prepared: PreparedJob) -> pa.Schema:
    """The schema of the output part of an input part without rows."""
    schema = part.schema()
    fields = [schema.field(name) for name in prepared.mapping.read_columns]
    empty = pa.RecordBatch.from_arrays(
        [pa.array([], f.type) for f in fields], schema=pa.schema(fields)
    )
    return scorer.empty_table(empty).schema


def _spare_core(job: BatchJob) -> bool:
    cores = os.cpu_count() or 1
    return (job.threads or cores) < cores


def _total_rows(parts: list[InputPart]) -> int | None:
    counts = [part.rows() for part in parts]
    return None if any(c is None for c in counts) else sum(c for c in counts if c is not None)


def read_ahead(items: Iterator[T], depth: int = 2) -> Iterator[T]:
    """``items``, produced on a thread up to ``depth`` ahead of the consumer; an exception
    raised while producing is raised here, in order."""
    slots: queue.Queue[tuple[bool, object]] = queue.Queue(depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        slots.put((True, item), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            slots.put((False, None))
        except BaseException as exc:
            slots.put((False, exc))

    thread = threading.Thread(target=produce, name="serval-batch-read", daemon=True)
    thread.start()
    try:
        while True:
            more, item = slots.get()
            if not more:
                if isinstance(item, BaseException):
                    raise item
                return
            yield item  # type: ignore[misc]
    finally:
        stop.set()
