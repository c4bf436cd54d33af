"""A cascade (two-phase predictions): stages tried in order, per row.

Every row goes to the first stage; the rows it accepts (its ``accept`` threshold on one of its
outputs) are answered by it, the rest go to the next stage as one batch, and so on; the last
stage answers every row left. Answers come back in the request's row order, with a BYTES
output ``served_by`` naming, per row, the model that answered it. Rows answered per stage are
counted in a ``CascadeCounts`` (exposed as a metric by ``observability``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from serval.core.composition.provider import ServableProvider
from serval.core.composition.signatures import output_of, same_inputs, same_outputs
from serval.core.composition.steps import StepCall
from serval.core.errors import InvalidInputError, ModelExecutionError, ModelLoadError
from serval.core.specs.composite import AcceptSpec, CascadeStage
from serval.core.tensors.datatypes import DataType
from serval.core.types import (
    InferenceRequest,
    InferenceResponse,
    RequestedOutput,
    ServableMetadata,
    Tensor,
    TensorSpec,
)

PLATFORM = "serval_cascade"
SERVED_BY = "served_by"


class CascadeCounts:
    """Rows answered per (cascade, stage model); changed on the event loop only, read at
    scrape time (also on the loop)."""

    __slots__ = ("rows",)

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], int] = {}

    def add(self, cascade: str, stage: str, rows: int) -> None:
        key = (cascade, stage)
        self.rows[key] = self.rows.get(key, 0) + rows


class _Stage:
    __slots__ = ("accept", "call", "label")

    def __init__(self, stage: CascadeStage, call: StepCall) -> None:
        self.accept: AcceptSpec | None = stage.accept
        self.call = call
        self.label = stage.ref.name.encode()  # served_by's value for its rows


class CascadeServable:
    """The servable of a cascade model named ``name``."""

    __slots__ = ("_counts", "_stages", "metadata", "name")

    def __init__(
        self,
        name: str,
        stages: Sequence[CascadeStage],
        provider: ServableProvider,
        counts: CascadeCounts,
    ) -> None:
        self.name = name
        self._counts = counts
        self._stages = [
            _Stage(
                stage,
                StepCall(
                    provider,
                    stage.ref,
                    f"cascade {name!r} stage {index} (model {stage.ref.name!r})",
                ),
            )
            for index, stage in enumerate(stages)
        ]
        self.metadata = self._derive_metadata()

    def _derive_metadata(self) -> ServableMetadata:
        first = self._stages[0].call
        first_meta = first.metadata()
        first_name = f"stage 0 (model {first.ref.name!r})"
        inputs = first_meta.inputs
        metas = []
        for index, stage in enumerate(self._stages):
            meta = first_meta if index == 0 else stage.call.metadata()
            metas.append(meta)
            where = f"cascade stage {index} (model {stage.call.ref.name!r})"
            if index:
                inputs = same_inputs(inputs, meta.inputs, where, first_name)
                same_outputs(first_meta.outputs, meta.outputs, where, first_name)
            if stage.accept is not None:
                accepted = output_of(meta.outputs, stage.accept.output, f"{where}: accept.output")
                if accepted.datatype in (DataType.BYTES, DataType.BOOL):
                    raise ModelLoadError(
                        f"{where}: accept.output {accepted.name!r} is {accepted.datatype}; a "
                        f"threshold needs numbers"
                    )
        if first_meta.output(SERVED_BY) is not None:
            raise ModelLoadError(
                f"cascade stage 0 (model {first.ref.name!r}): it has an output named "
                f"{SERVED_BY!r}, which the cascade adds itself"
            )
        for stage, meta in zip(self._stages, metas, strict=True):
            stage.call.trust(meta)  # every stage gets rows of the request, checked against inputs
        served_by = TensorSpec(SERVED_BY, DataType.BYTES, (-1,))
        return ServableMetadata(PLATFORM, inputs, (*first_meta.outputs, served_by))

    async def predict(self, request: InferenceRequest) -> InferenceResponse:
        if request.outputs is None:
            wanted = [spec.name for spec in self.metadata.outputs]
        else:
            wanted = [output.name for output in request.outputs]
        model_outputs = [name for name in wanted if name != SERVED_BY]
        requested = [RequestedOutput(name) for name in model_outputs]
        rows = request.rows
        if any(tensor.data.ndim == 0 for tensor in request.inputs):
            raise InvalidInputError(
                f"cascade {self.name!r} answers per row: every input needs a first (batch) "
                f"dimension"
            )
        remaining = np.arange(rows)  # the request's rows still unanswered, in order
        inputs = request.inputs
        results: dict[str, np.ndarray[Any, Any]] = {}
        datatypes: dict[str, DataType] = {}
        served_by = np.empty(rows, dtype=np.object_)
        for stage in self._stages:
            asked = requested
            if stage.accept is not None and stage.accept.output not in model_outputs:
                asked = [*requested, RequestedOutput(stage.accept.output)]
            response = await stage.call(request, inputs, asked)
            produced = {tensor.name: tensor for tensor in response.outputs}
            taken = len(remaining)
            accepted = self._accepted(stage, produced, taken)
            chosen = remaining[accepted]
            for name in model_outputs:
                tensor = produced.get(name)
                if tensor is None or tensor.data.ndim == 0 or tensor.data.shape[0] != taken:
                    raise ModelExecutionError(
                        f"{stage.call.label} did not answer output {name!r} with one row per "
                        f"input row"
                    )
                target = results.get(name)
                if target is None:
                    target = results[name] = np.empty(
                        (rows, *tensor.data.shape[1:]), dtype=tensor.data.dtype
                    )
                    datatypes[name] = tensor.datatype
                elif target.shape[1:] != tensor.data.shape[1:]:
                    raise ModelExecutionError(
                        f"{stage.call.label}: output {name!r} has shape "
                        f"{list(tensor.data.shape[1:])} per row, an earlier stage's has "
                        f"{list(target.shape[1:])}"
                    )
                target[chosen] = tensor.data[accepted]
            served_by[chosen] = stage.label
            self._counts.add(self.name, stage.call.ref.name, len(chosen))
            if len(chosen) == taken:
                break
            rest = ~accepted
            remaining = remaining[rest]
            inputs = [Tensor(t.name, t.datatype, t.data[rest]) for t in inputs]
        outputs = []
        for name in wanted:
            if name == SERVED_BY:
                outputs.append(Tensor(SERVED_BY, DataType.BYTES, served_by))
            else:
                outputs.append(Tensor(name, datatypes[name], results[name]))
        return InferenceResponse(request.model_name, outputs)

    @staticmethod
    def _accepted(stage: _Stage, produced: dict[str, Tensor], taken: int) -> np.ndarray[Any, Any]:
        """Which of the ``taken`` rows ``stage`` keeps (every row for the last stage)."""
        accept = stage.accept
        if accept is None:
            return np.ones(taken, dtype=bool)
        tensor = produced.get(accept.output)
        if tensor is None or tensor.data.ndim == 0 or tensor.data.shape[0] != taken:
            raise ModelExecutionError(
                f"{stage.call.label} did not answer output {accept.output!r} with one row per "
                f"input row"
            )
        top = tensor.data.reshape(taken, -1).max(axis=1) if taken else np.empty(0)
        if accept.min_confidence is not None:
            kept: np.ndarray[Any, Any] = top >= accept.min_confidence
        elif accept.min_value is not None:
            kept = top >= accept.min_value
        else:
            assert accept.max_value is not None
            kept = top <= accept.max_value
        return kept

    def workload(self) -> int:
        return 0  # its calls wait in the queues of the models it calls

    async def close(self) -> None:
        return None  # it holds no model: it leases them per call
