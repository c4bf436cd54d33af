"""A batch job's options, its preparation (parts, mapping, output) shared by both engines,
and ``score``, the Python API behind ``serval batch``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from serval.batch.columns import ColumnMapping, map_columns
from serval.batch.errors import BatchInputError
from serval.batch.model import BatchModel
from serval.batch.progress import JobSummary, Progress, SilentProgress
from serval.batch.scoring import OnError
from serval.batch.sinks import output_format
from serval.batch.sources import InputPart, find_parts

# Rows per model call by default: past a few thousand rows a call's fixed cost (the data
# plane, tensors from columns, the thread hop) is lost in the model's own time, and a record
# batch of this size stays a few MB for models of a few hundred features (bench/batch.py).
DEFAULT_BATCH_ROWS = 4096

Engine = Literal["local", "ray"]


@dataclass(frozen=True)
class BatchJob:
    """What ``serval batch`` is asked to do (one field per option; see ``serval batch -h``)."""

    model: Path
    input: str
    output: Path
    version: int | None = None
    keys: tuple[str, ...] = ()
    columns: tuple[str, ...] | None = None
    mapping: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    batch_rows: int = DEFAULT_BATCH_ROWS
    resume: bool = False
    overwrite: bool = False
    on_error: OnError = "stop"
    engine: Engine = "local"
    ray_address: str | None = None
    to: str | None = None  # precomputed predictions: redis://host:port/db or sqlite:///path
    redis_prefix: str = "serval:"
    threads: int | None = None  # the model runtime's threads (None: model.yaml's)

    def __post_init__(self) -> None:
        if self.batch_rows < 1:
            raise BatchInputError(f"--batch-rows must be at least 1, not {self.batch_rows}")
        if self.to is not None and not self.keys:
            raise BatchInputError(
                "--to: precomputed predictions are stored under their key: name the key "
                "column(s) with --key"
            )


@dataclass(frozen=True)
class PreparedJob:
    """What a job resolved before any work: its parts, how columns feed the model, the output
    format, the rows per model call and the description a resumed run must match."""

    parts: list[InputPart]
    mapping: ColumnMapping
    format: str
    call_rows: int

    def describe(self, job: BatchJob, model: BatchModel) -> dict[str, Any]:
        return {
            "model": str(model.folder),
            "version": model.served_version,
            "inputs": [str(part.path.resolve()) for part in self.parts],
            "keys": list(job.keys),
            "mapping": self.mapping.describe(),
            "format": self.format,
            "on_error": job.on_error,
        }


def prepare(job: BatchJob, model: BatchModel) -> PreparedJob:
    """Find the parts and map their columns onto ``model``'s inputs; every part must map the
    same way (a part that lacks a column or has another type is named before any work)."""
    parts = find_parts(job.input)
    inputs = model.metadata.inputs
    mapping: ColumnMapping | None = None
    for part in parts:
        found = map_columns(
            inputs,
            part.schema(),
            keys=job.keys,
            columns=job.columns,
            explicit=job.mapping,
            source=str(part.path),
        )
        if mapping is None:
            mapping = found
        elif found.describe() != mapping.describe():
            raise BatchInputError(
                f"{part.path} maps its columns as {found.describe()}, but {parts[0].path} as "
                f"{mapping.describe()}: every input part needs the same columns"
            )
    assert mapping is not None  # find_parts returns at least one part
    call_rows = job.batch_rows
    if model.spec.max_batch_size:  # the model takes at most this many rows a call
        call_rows = min(call_rows, model.spec.max_batch_size)
    return PreparedJob(parts, mapping, output_format(job.output), call_rows)


def score(job: BatchJob, progress: Progress | None = None) -> JobSummary:
    """Run ``job`` on its engine; returns what it did. Raises a ``ServalError`` naming the
    file, column, part or option at fault."""
    progress = progress or SilentProgress()
    if job.engine == "ray":
        from serval.batch.ray_engine import run_on_ray  # noqa: PLC0415 - the batch-ray extra

        return run_on_ray(job, progress)
    from serval.batch.local import run_locally  # noqa: PLC0415 - one engine's code per job

    return run_locally(job, progress)


def parse_mapping(items: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """``--map input=col1,col2`` options -> {input: columns}."""
    mapping: dict[str, tuple[str, ...]] = {}
    for item in items:
        name, sep, columns = item.partition("=")
        cols = tuple(c.strip() for c in columns.split(",") if c.strip())
        if not sep or not name.strip() or not cols:
            raise BatchInputError(f"--map {item!r}: expected INPUT=COLUMN[,COLUMN...]")
        mapping[name.strip()] = cols
    return mapping
