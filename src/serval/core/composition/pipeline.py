"""A pipeline: steps that each call a model of the repository, wired into a DAG.

The steps run level by level (a level: the steps whose inputs are ready once the levels
before it ran); the steps of one level run concurrently. Only the steps that the requested
outputs need run, and each step is asked only for the outputs that are used. No step holds a
thread: each is an ``await`` on the step model's own servable.
"""

from __future__ import annotations

from serval.core.composition.provider import ServableProvider
from serval.core.composition.signatures import describe, narrower, output_of, tensors_fit
from serval.core.composition.steps import StepCall, together
from serval.core.errors import ModelExecutionError, ModelLoadError
from serval.core.specs.composite import INPUTS, PipelineSpec, PipelineStep, TensorRef
from serval.core.types import (
    InferenceRequest,
    InferenceResponse,
    RequestedOutput,
    ServableMetadata,
    Tensor,
    TensorSpec,
)

PLATFORM = "serval_pipeline"
_MAX_PLANS = 64


class _Step:
    """A step as the pipeline runs it."""

    __slots__ = ("call", "name", "sources", "wiring")

    def __init__(self, step: PipelineStep, call: StepCall) -> None:
        self.name = step.name
        self.call = call
        self.sources = step.sources()  # step input -> where it comes from
        # (step input, the key of its value): what ``inputs`` reads.
        self.wiring = tuple(
            (wanted, (source.step, source.tensor)) for wanted, source in self.sources.items()
        )

    def inputs(self, values: dict[tuple[str, str], Tensor]) -> list[Tensor]:
        """The step's inputs from the values computed so far (the arrays as they are)."""
        inputs = []
        for wanted, key in self.wiring:
            tensor = values[key]
            # A new tensor only when renamed or carrying parameters meant for another model.
            if tensor.name != wanted or tensor.parameters:
                tensor = Tensor(wanted, tensor.datatype, tensor.data)
            inputs.append(tensor)
        return inputs

    def keep(
        self,
        response: InferenceResponse,
        asked: list[RequestedOutput],
        values: dict[tuple[str, str], Tensor],
    ) -> None:
        """Put the outputs asked of the step into ``values``."""
        answered = response.outputs
        for output in asked:
            name = output.name
            for tensor in answered:
                if tensor.name == name:
                    values[(self.name, name)] = tensor
                    break
            else:
                raise ModelExecutionError(f"{self.call.label} did not answer output {name!r}")


class _Plan:
    """The run of a request asking for ``outputs``: levels of (step, outputs asked of it)."""

    __slots__ = ("levels", "outputs")

    def __init__(
        self, outputs: tuple[str, ...], levels: list[list[tuple[_Step, list[RequestedOutput]]]]
    ) -> None:
        self.outputs = outputs
        self.levels = levels


class PipelineServable:
    """The servable of a pipeline model named ``name``."""

    __slots__ = ("_default", "_outputs", "_plans", "_steps", "metadata", "name")

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
        self._plans: dict[tuple[str, ...], _Plan] = {}
        self._default = self._plan(tuple(self._outputs))

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
            # Whether what the step gets always fits (then its calls skip the check).
            fits = True
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
                fits = fits and all(
                    want in (-1, got)
                    for want, got in zip(consumer.shape, producer.shape, strict=True)
                )
            if fits:
                step.call.trust(models[name])
        outputs = []
        for out, source in self._outputs.items():
            produced = output_of(
                models[source.step].outputs, source.tensor, f"pipeline outputs.{out}"
            )
            outputs.append(TensorSpec(out, produced.datatype, produced.shape))
        return ServableMetadata(PLATFORM, tuple(inputs.values()), tuple(outputs))

    def _plan(self, outputs: tuple[str, ...]) -> _Plan:
        """What runs for a request asking for ``outputs``: the steps they need, in levels
        that run one after another, and what each step is asked for (built once per output
        selection)."""
        plan = self._plans.get(outputs)
        if plan is not None:
            return plan
        needed: set[str] = set()
        stack = [self._outputs[out].step for out in outputs]
        while stack:
            name = stack.pop()
            if name not in needed:
                needed.add(name)
                stack.extend(s.step for s in self._steps[name].sources.values() if not s.is_input)
        levels: list[list[_Step]] = []
        done: set[str] = set()
        while len(done) < len(needed):
            level = [
                step
                for name, step in self._steps.items()  # the spec's order: reproducible runs
                if name in needed
                and name not in done
                and all(s.is_input or s.step in done for s in step.sources.values())
            ]
            levels.append(level)
            done.update(step.name for step in level)
        # Which outputs of each step are used: by a step that runs, or as a pipeline output.
        used: dict[str, dict[str, None]] = {name: {} for name in needed}
        for name in needed:
            for source in self._steps[name].sources.values():
                if not source.is_input:
                    used[source.step][source.tensor] = None
        for out in outputs:
            source = self._outputs[out]
            used[source.step][source.tensor] = None
        asked = {name: [RequestedOutput(tensor) for tensor in used[name]] for name in needed}
        plan = _Plan(outputs, [[(step, asked[step.name]) for step in lv] for lv in levels])
        if len(self._plans) < _MAX_PLANS:  # the selections clients make are few
            self._plans[outputs] = plan
        return plan

    async def predict(self, request: InferenceRequest) -> InferenceResponse:
        if request.outputs is None:
            plan = self._default
        else:
            plan = self._plan(tuple(output.name for output in request.outputs))
        values: dict[tuple[str, str], Tensor] = {
            (INPUTS, tensor.name): tensor for tensor in request.inputs
        }
        for level in plan.levels:
            if len(level) == 1:  # awaited here: no task, nothing to give up
                step, asked = level[0]
                response = await step.call(request, step.inputs(values), asked)
                step.keep(response, asked, values)
                continue
            # Every step of the level joins its model's queue before any is awaited.
            begun = [(step.call, step.inputs(values), asked) for step, asked in level]
            responses = await together(request, begun)
            for (step, asked), response in zip(level, responses, strict=True):
                step.keep(response, asked, values)
        outputs = []
        for out in plan.outputs:
            source = self._outputs[out]
            tensor = values[(source.step, source.tensor)]
            if tensor.name != out:
                tensor = Tensor(out, tensor.datatype, tensor.data, tensor.parameters)
            outputs.append(tensor)
        return InferenceResponse(request.model_name, outputs)

    def workload(self) -> int:
        return 0  # its calls wait in the queues of the models it calls

    async def close(self) -> None:
        return None  # it holds no model: it leases them per call
