"""A pipeline: steps that each call a model of the repository, wired into a DAG.

The steps run level by level (a level: the steps whose inputs are ready once the levels
before it ran); the steps of one level run concurrently. Only the steps that the requested
outputs need run, and each step is asked only for the outputs that are used. No step holds a
thread: each is an ``await`` on the step model's own servable.
"""

from __future__ import annotations

from collections.abc import Sequence

from serval.core.composition.provider import ServableProvider
from serval.core.composition.signatures import describe, narrower, output_of, tensors_fit
from serval.core.composition.steps import StepCall, concurrently
from serval.core.errors import ModelExecutionError, ModelLoadError
from serval.core.specs.composite import PipelineSpec, PipelineStep, TensorRef
from serval.core.types import (
    InferenceRequest,
    InferenceResponse,
    ServableMetadata,
    Tensor,
    TensorSpec,
)

PLATFORM = "serval_pipeline"


class _Step:
    """A step as the pipeline runs it."""

    __slots__ = ("call", "name", "sources")

    def __init__(self, step: PipelineStep, call: StepCall) -> None:
        self.name = step.name
        self.call = call
        self.sources = step.sources()  # step input -> where it comes from


class PipelineServable:
    """The servable of a pipeline model named ``name``."""

    __slots__ = ("_all_levels", "_outputs", "_steps", "metadata", "name")

    def __init__(self, name: str, spec: PipelineSpec, provider: ServableProvider) -> None:
        self.name = name
        self._steps = {
            step.name: _Step(
                step,
                StepCall(
                    provider,
                    step.ref,
                    f"pipeline {name!r} step {step.name!r} (model {step.ref.name!r})",
                ),
            )
            for step in spec.steps
        }
        self._outputs = {out: TensorRef.parse(text) for out, text in spec.outputs.items()}
        self.metadata = self._derive_metadata()
        self._all_levels = self._levels(set(self._outputs))

    def _derive_metadata(self) -> ServableMetadata:
        """Every step's model's metadata (leased now), checked against the wiring."""
        models = {name: step.call.metadata() for name, step in self._steps.items()}
        inputs: dict[str, TensorSpec] = {}
        for name, step in self._steps.items():
            where = f"pipeline step {name!r} (model {step.call.ref.name!r})"
            declared = {spec.name: spec for spec in models[name].inputs}
            for wanted in step.sources:
                if wanted not in declared:
                    raise ModelLoadError(
                        f"{where}: inputs.{wanted}: the model has no input {wanted!r} "
                        f"(inputs: {', '.join(declared)})"
                    )
            for unwired in [n for n in declared if n not in step.sources]:
                raise ModelLoadError(
                    f"{where}: the model's input {unwired!r} is not wired: add it to inputs"
                )
            for wanted, source in step.sources.items():
                consumer = declared[wanted]
                if source.is_input:
                    seen = inputs.get(source.tensor)
                    if seen is not None and not tensors_fit(seen, consumer):
                        raise ModelLoadError(
                            f"{where}: inputs.{wanted} <- {source}: the model takes "
                            f"{describe(consumer)}, another step takes {describe(seen)}"
                        )
                    shape = narrower(seen, consumer) if seen is not None else consumer.shape
                    inputs[source.tensor] = TensorSpec(source.tensor, consumer.datatype, shape)
                    continue
                producer = output_of(
                    models[source.step].outputs, source.tensor, f"{where}: inputs.{wanted}"
                )
                if not tensors_fit(producer, consumer):
                    raise ModelLoadError(
                        f"{where}: input {wanted!r} ({describe(consumer)}) does not match step "
                        f"{source.step!r} output {source.tensor!r} ({describe(producer)})"
                    )
        outputs = []
        for out, source in self._outputs.items():
            produced = output_of(
                models[source.step].outputs, source.tensor, f"pipeline outputs.{out}"
            )
            outputs.append(TensorSpec(out, produced.datatype, produced.shape))
        return ServableMetadata(PLATFORM, tuple(inputs.values()), tuple(outputs))

    def _levels(self, outputs: set[str]) -> list[list[str]]:
        """The steps that ``outputs`` need, grouped into levels that run one after another."""
        needed: set[str] = set()
        stack = [self._outputs[out].step for out in outputs]
        while stack:
            name = stack.pop()
            if name not in needed:
                needed.add(name)
                stack.extend(s.step for s in self._steps[name].sources.values() if not s.is_input)
        levels: list[list[str]] = []
        done: set[str] = set()
        while len(done) < len(needed):
            level = [
                name
                for name in self._steps  # the spec's order, so that runs are reproducible
                if name in needed
                and name not in done
                and all(s.is_input or s.step in done for s in self._steps[name].sources.values())
            ]
            levels.append(level)
            done.update(level)
        return levels

    async def predict(self, request: InferenceRequest) -> InferenceResponse:
        if request.outputs is None:
            wanted: Sequence[str] = list(self._outputs)
            levels = self._all_levels
        else:
            wanted = [output.name for output in request.outputs]
            levels = self._levels(set(wanted))
        # Which outputs of each step are used: by a later step, or as a pipeline output.
        used: dict[str, list[str]] = {}
        for level in levels:
            for name in level:
                for source in self._steps[name].sources.values():
                    if not source.is_input:
                        used.setdefault(source.step, []).append(source.tensor)
        for out in wanted:
            source = self._outputs[out]
            used.setdefault(source.step, []).append(source.tensor)
        values: dict[tuple[str, str], Tensor] = {
            ("inputs", tensor.name): tensor for tensor in request.inputs
        }
        for level in levels:
            if len(level) == 1:
                await self._run(level[0], request, values, used)
            else:
                await concurrently([self._run(name, request, values, used) for name in level])
        outputs = []
        for out in wanted:
            source = self._outputs[out]
            tensor = values[(source.step, source.tensor)]
            outputs.append(Tensor(out, tensor.datatype, tensor.data, tensor.parameters))
        return InferenceResponse(request.model_name, outputs)

    async def _run(
        self,
        name: str,
        request: InferenceRequest,
        values: dict[tuple[str, str], Tensor],
        used: dict[str, list[str]],
    ) -> None:
        step = self._steps[name]
        inputs = []
        for wanted, source in step.sources.items():
            tensor = values[(source.step, source.tensor)]
            inputs.append(Tensor(wanted, tensor.datatype, tensor.data))
        outputs = list(dict.fromkeys(used.get(name, ())))
        response = await step.call(request, inputs, outputs)
        produced = {tensor.name: tensor for tensor in response.outputs}
        for output in outputs:
            answered = produced.get(output)
            if answered is None:
                raise ModelExecutionError(f"{step.call.label} did not answer output {output!r}")
            values[(name, output)] = answered

    def workload(self) -> int:
        return 0  # its calls wait in the queues of the models it calls

    async def close(self) -> None:
        return None  # it holds no model: it leases them per call
