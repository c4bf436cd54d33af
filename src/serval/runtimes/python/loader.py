"""Custom Python models: ``model.py`` defines a subclass of ``serval.ServingModel``.

With ``runtime_options.isolation: thread`` (the default) the model runs in the server process on
the inference threads; with ``isolation: process`` it runs in ``workers`` worker processes.
"""

from __future__ import annotations

import time
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from serval.core.errors import ModelConfigError
from serval.core.lifecycle.loader import LoadRequest
from serval.core.types import (
    InferenceRequest,
    InferenceResponse,
    InferenceTimings,
    ServableMetadata,
    Tensor,
)
from serval.runtimes.options import parse_runtime_options
from serval.runtimes.python.runner import ModelDescription, ModelRunner
from serval.runtimes.python.workers import WorkerConfig, WorkerPool


class PythonOptions(BaseModel):
    """``runtime_options`` of a custom Python model in ``model.yaml``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    isolation: Literal["thread", "process"] = Field(
        default="thread",
        description="thread: run in the server process; process: run in worker processes, so "
        "a slow, GIL-bound or crashing model cannot stall or take down the server.",
    )
    workers: int = Field(default=1, ge=1, le=256, description="Worker processes (process only).")
    timeout_s: float | None = Field(
        default=None,
        gt=0,
        le=86_400,
        description="A prediction running longer fails (504). process: its worker restarts. "
        "thread: the call is abandoned, and its thread counts against the model's "
        "concurrency.limit until the model returns.",
    )
    start_timeout_s: float = Field(
        default=120.0,
        gt=0,
        description="process only: how long a worker may take to load the model, and how long "
        "a request waits for a free worker (then 503).",
    )

    @model_validator(mode="after")
    def _process_only(self) -> PythonOptions:
        if self.isolation == "thread":
            given = [n for n in ("workers",) if n in self.model_fields_set]
            if given:
                raise ValueError(f"{', '.join(given)} need isolation: process")
        return self


class PythonLoader:
    def __init__(self, request: LoadRequest) -> None:
        self._request = request
        self._options = parse_runtime_options(PythonOptions, request)
        if request.spec.inputs or request.spec.outputs:
            raise ModelConfigError(
                "model.yaml: inputs/outputs: a Python model declares its inputs and outputs in "
                "its class; remove them from model.yaml"
            )

    def load(self) -> PythonPredictor:
        request, options = self._request, self._options
        label = f"model {request.name!r} version {request.version}"
        if options.isolation == "thread":
            runner = ModelRunner.load(request.path, request.spec.parameters, label)
            return PythonPredictor(runner.description, runner, options.timeout_s)
        pool = WorkerPool(
            WorkerConfig(
                label,
                request.path,
                request.spec.parameters,
                workers=options.workers,
                start_timeout_s=options.start_timeout_s,
                call_timeout_s=options.timeout_s,
            )
        )
        return PythonPredictor(pool.start(), pool)


class PythonPredictor:
    """Checks the request's signature and outputs, then runs it in-process or in a worker."""

    def __init__(
        self,
        description: ModelDescription,
        backend: ModelRunner | WorkerPool,
        call_timeout_s: float | None = None,
    ) -> None:
        self._description = description
        self._backend = backend
        self._call_timeout_s = call_timeout_s

    @property
    def call_timeout_s(self) -> float | None:
        """In thread mode, the servable abandons a call past it (a worker pool applies its own)."""
        return self._call_timeout_s

    @property
    def metadata(self) -> ServableMetadata:
        return self._description.metadata

    def predict(self, request: InferenceRequest) -> InferenceResponse:
        started = time.perf_counter_ns()
        wanted = None if request.outputs is None else [o.name for o in request.outputs]
        signature = self._description.check_call(request.parameters, wanted)
        outputs: list[Tensor] = self._backend.run(request.inputs, signature, wanted)
        timings = InferenceTimings(
            compute_infer_ns=time.perf_counter_ns() - started, batch_size=request.rows
        )
        return InferenceResponse(request.model_name, outputs, timings=timings)

    def close(self) -> None:
        self._backend.close()
