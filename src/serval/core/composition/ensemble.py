"""An ensemble: members that run concurrently on the same inputs, one output combined.

``mean``: the element-wise mean of the output over the members (in the output's datatype).
``vote``: per row, the label most members answered; a tie goes to the earliest member among
those tied. Every other output comes from the first member. When the request does not ask for
the combined output, only the first member runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from serval.core.composition.provider import ServableProvider
from serval.core.composition.signatures import (
    NUMERIC,
    describe,
    output_of,
    same_inputs,
    shapes_fit,
)
from serval.core.composition.steps import StepCall, together
from serval.core.errors import ModelExecutionError, ModelLoadError
from serval.core.specs.composite import EnsembleSpec
from serval.core.types import (
    InferenceRequest,
    InferenceResponse,
    RequestedOutput,
    ServableMetadata,
    Tensor,
)

PLATFORM = "serval_ensemble"


class EnsembleServable:
    """The servable of an ensemble model named ``name``."""

    __slots__ = ("_asked", "_combine", "_members", "_output", "metadata", "name")

    def __init__(self, name: str, spec: EnsembleSpec, provider: ServableProvider) -> None:
        self.name = name
        self._combine = spec.combine
        self._output = spec.output
        self._asked = [RequestedOutput(spec.output)]
        self._members = [
            StepCall(provider, ref, f"ensemble {name!r} member {index} (model {ref.name!r})")
            for index, ref in enumerate(spec.refs)
        ]
        self.metadata = self._derive_metadata()

    def _derive_metadata(self) -> ServableMetadata:
        first = self._members[0]
        first_meta = first.metadata()
        first_name = f"member 0 (model {first.ref.name!r})"
        combined = output_of(first_meta.outputs, self._output, f"ensemble {first_name}: output")
        if self._combine == "mean" and combined.datatype not in NUMERIC:
            raise ModelLoadError(
                f"ensemble {first_name}: output {self._output!r} is {combined.datatype}; "
                f"combine: mean needs numbers (vote takes labels)"
            )
        inputs = first_meta.inputs
        first.trust(first_meta)  # every member gets the request, checked against `inputs`
        for index, member in enumerate(self._members[1:], start=1):
            meta = member.metadata()
            member.trust(meta)
            where = f"ensemble member {index} (model {member.ref.name!r})"
            inputs = same_inputs(inputs, meta.inputs, where, first_name)
            theirs = output_of(meta.outputs, self._output, f"{where}: output")
            if theirs.datatype is not combined.datatype or not shapes_fit(
                theirs.shape, combined.shape
            ):
                raise ModelLoadError(
                    f"{where}: output {self._output!r} is {describe(theirs)}, {first_name}'s "
                    f"is {describe(combined)}"
                )
        return ServableMetadata(PLATFORM, inputs, first_meta.outputs)

    async def predict(self, request: InferenceRequest) -> InferenceResponse:
        first = self._members[0]
        wanted = request.outputs
        if wanted is not None and all(o.name != self._output for o in wanted):
            response = await first(request, request.inputs, wanted)
            return InferenceResponse(request.model_name, response.outputs)
        asked = self._asked  # the others are asked for the combined output only
        others = [(member, request.inputs, asked) for member in self._members[1:]]
        responses = await together(request, [(first, request.inputs, wanted), *others])
        values = [
            self._value(member, response)
            for member, response in zip(self._members, responses, strict=True)
        ]
        combined = _mean(values) if self._combine == "mean" else _vote(values)
        outputs = [
            Tensor(t.name, t.datatype, combined) if t.name == self._output else t
            for t in responses[0].outputs
        ]
        return InferenceResponse(request.model_name, outputs)

    def _value(self, member: StepCall, response: InferenceResponse) -> np.ndarray[Any, Any]:
        for tensor in response.outputs:
            if tensor.name == self._output:
                return tensor.data
        raise ModelExecutionError(f"{member.label} did not answer output {self._output!r}")

    def workload(self) -> int:
        return 0  # its calls wait in the queues of the models it calls

    async def close(self) -> None:
        return None  # it holds no model: it leases them per call


def _same_shape(values: Sequence[np.ndarray[Any, Any]]) -> None:
    shapes = {value.shape for value in values}
    if len(shapes) > 1:
        raise ModelExecutionError(
            f"the ensemble's members answered the combined output in different shapes: "
            f"{sorted(map(list, shapes))}"
        )


def _mean(values: Sequence[np.ndarray[Any, Any]]) -> np.ndarray[Any, Any]:
    _same_shape(values)
    mean: np.ndarray[Any, Any] = np.mean(np.stack(values), axis=0)
    return mean.astype(values[0].dtype, copy=False)


def _vote(values: Sequence[np.ndarray[Any, Any]]) -> np.ndarray[Any, Any]:
    """Per row (first dimension), the members' most frequent answer; ties to the earliest
    member among those tied (a dict keeps the order labels were first seen in)."""
    _same_shape(values)
    first = values[0]
    if first.ndim == 0:
        return _vote([value.reshape(1) for value in values]).reshape(())
    result = first.copy()
    rows = [value.reshape(len(value), -1) for value in values]
    for row in range(len(first)):
        counts: dict[bytes, int] = {}
        winner_of: dict[bytes, int] = {}
        for member, value in enumerate(rows):
            key = value[row].tobytes() if value.dtype.kind != "O" else repr(list(value[row]))
            key_bytes = key if isinstance(key, bytes) else key.encode()
            counts[key_bytes] = counts.get(key_bytes, 0) + 1
            winner_of.setdefault(key_bytes, member)
        best = max(counts, key=counts.__getitem__)  # the first of the most frequent
        result[row] = values[winner_of[best]][row]
    return result
