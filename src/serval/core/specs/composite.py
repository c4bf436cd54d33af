"""The composite sections of ``model.yaml``: ``pipeline``, ``cascade`` and ``ensemble``.

A composite model names other models of the repository (``"name"``, or ``"name:2"`` pinned to
a version) and has no runtime and no version folders of its own. What can be checked without
the other models is checked here, at parse time, naming the field: references to steps that do
not exist, duplicate step names, cycles. What needs the other models' metadata (datatypes and
shapes between steps) is checked when the composite loads (``core.composition.signatures``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from pydantic import Field, field_validator, model_validator

from serval.core.specs.strict import StrictSection

_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
_MODEL_REF = re.compile(r"^(?P<name>[^:/\s]+)(?::(?P<version>[1-9][0-9]*))?$")
INPUTS = "inputs"  # the prefix of a pipeline input in a step's inputs: "inputs.X"
MAX_STEPS = 64


@dataclass(frozen=True, slots=True)
class ModelRef:
    """A model a composite calls: its name, and its version when pinned (``name:2``)."""

    name: str
    version: int | None = None

    @classmethod
    def parse(cls, text: str) -> ModelRef:
        match = _MODEL_REF.match(text)
        if match is None:
            raise ValueError(f"{text!r} is not a model reference: 'name' or 'name:VERSION'")
        version = match.group("version")
        return cls(match.group("name"), int(version) if version else None)

    def __str__(self) -> str:
        return self.name if self.version is None else f"{self.name}:{self.version}"


@dataclass(frozen=True, slots=True)
class TensorRef:
    """``step.tensor`` (an output of a step) or ``inputs.tensor`` (an input of the pipeline)."""

    step: str  # INPUTS for the pipeline's own input
    tensor: str

    @classmethod
    def parse(cls, text: str) -> TensorRef:
        step, dot, tensor = text.partition(".")
        if not dot or not step or not tensor:
            raise ValueError(f"{text!r} is not 'step.output' or 'inputs.name'")
        return cls(step, tensor)

    @property
    def is_input(self) -> bool:
        return self.step == INPUTS

    def __str__(self) -> str:
        return f"{self.step}.{self.tensor}"


def _check_model_ref(text: str) -> str:
    ModelRef.parse(text)
    return text


class PipelineStep(StrictSection):
    """One step: a call of a model of the repository."""

    name: str = Field(description="The step's name, which other steps and the outputs name.")
    model: str = Field(description="The model it calls: 'name', or 'name:2' for version 2.")
    inputs: dict[str, str] = Field(
        min_length=1,
        description="Each input of the step's model and where it comes from: 'inputs.X' (the "
        "pipeline's input X) or 'step.output' (an output of another step).",
    )

    @field_validator("model")
    @classmethod
    def _model_valid(cls, model: str) -> str:
        return _check_model_ref(model)

    @field_validator("name")
    @classmethod
    def _name_valid(cls, name: str) -> str:
        if not _NAME.match(name) or name == INPUTS:
            raise ValueError(f"step name {name!r} must match [A-Za-z0-9_.-]+ and not be 'inputs'")
        return name

    @field_validator("inputs")
    @classmethod
    def _sources_valid(cls, inputs: dict[str, str]) -> dict[str, str]:
        for name, source in inputs.items():
            try:
                TensorRef.parse(source)
            except ValueError as exc:
                raise ValueError(f"inputs.{name}: {exc}") from None
        return inputs

    @property
    def ref(self) -> ModelRef:
        return ModelRef.parse(self.model)

    def sources(self) -> dict[str, TensorRef]:
        return {name: TensorRef.parse(source) for name, source in self.inputs.items()}


class PipelineSpec(StrictSection):
    """A sequence or DAG of steps; each step's inputs come from the pipeline's inputs or from
    other steps' outputs."""

    steps: tuple[PipelineStep, ...] = Field(
        min_length=1, max_length=MAX_STEPS, description="The steps, in any order (a DAG)."
    )
    outputs: dict[str, str] = Field(
        min_length=1,
        description="The pipeline's outputs: name -> 'step.output'.",
    )

    @model_validator(mode="after")
    def _graph_valid(self) -> PipelineSpec:
        names = [step.name for step in self.steps]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"steps: duplicate step name(s) {', '.join(map(repr, duplicates))}")
        known = set(names)
        for index, step in enumerate(self.steps):
            for name, source in step.sources().items():
                if not source.is_input and source.step not in known:
                    raise ValueError(
                        f"steps.{index} ({step.name}).inputs.{name}: unknown step "
                        f"{source.step!r} (steps: {', '.join(names)})"
                    )
                if source.step == step.name:
                    raise ValueError(
                        f"steps.{index} ({step.name}).inputs.{name}: a step cannot take its "
                        f"own output"
                    )
        for name, text in self.outputs.items():
            try:
                source = TensorRef.parse(text)
            except ValueError as exc:
                raise ValueError(f"outputs.{name}: {exc}") from None
            if source.step not in known:
                raise ValueError(
                    f"outputs.{name}: unknown step {source.step!r} (steps: {', '.join(names)})"
                )
        cycle = _find_cycle({s.name: {r.step for r in s.sources().values()} for s in self.steps})
        if cycle:
            raise ValueError(f"steps: a cycle: {' -> '.join(cycle)}")
        return self

    def step(self, name: str) -> PipelineStep:
        return next(step for step in self.steps if step.name == name)


def _find_cycle(needs: dict[str, set[str]]) -> list[str]:
    """A cycle of ``needs`` (step -> the steps it takes outputs of), as the steps on it with
    the first repeated at the end; empty when there is none."""
    done: set[str] = set()
    path: list[str] = []

    def visit(name: str) -> list[str]:
        if name in path:
            return [*path[path.index(name) :], name]
        if name in done or name not in needs:
            return []
        path.append(name)
        for other in sorted(needs[name]):
            cycle = visit(other)
            if cycle:
                return cycle
        path.pop()
        done.add(name)
        return []

    for name in needs:
        found = visit(name)
        if found:
            return found
    return []


class AcceptSpec(StrictSection):
    """Which rows a cascade stage answers itself; exactly one threshold."""

    output: str = Field(description="The stage's output the threshold looks at.")
    min_confidence: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="Accept rows whose top score (the largest value of the row) is at least this.",
    )
    min_value: float | None = Field(
        default=None, description="Accept rows whose value (the row's largest) is at least this."
    )
    max_value: float | None = Field(
        default=None, description="Accept rows whose value (the row's largest) is at most this."
    )

    @model_validator(mode="after")
    def _one_threshold(self) -> AcceptSpec:
        set_ = [v for v in (self.min_confidence, self.min_value, self.max_value) if v is not None]
        if len(set_) != 1:
            raise ValueError("accept needs exactly one of min_confidence, min_value, max_value")
        return self


class CascadeStage(StrictSection):
    """One stage: a model, and which of its answers it keeps (all, for the last stage)."""

    model: str = Field(description="The model: 'name', or 'name:2' for version 2.")
    accept: AcceptSpec | None = Field(
        default=None,
        description="Rows this stage answers; the rest go to the next stage. Every stage but "
        "the last has one; the last has none (it answers every row left).",
    )

    @field_validator("model")
    @classmethod
    def _model_valid(cls, model: str) -> str:
        return _check_model_ref(model)

    @property
    def ref(self) -> ModelRef:
        return ModelRef.parse(self.model)


def check_cascade(stages: tuple[CascadeStage, ...]) -> tuple[CascadeStage, ...]:
    """Every stage but the last accepts some rows; the last accepts all."""
    if len(stages) < 2:
        raise ValueError("a cascade has at least two stages")
    for index, stage in enumerate(stages[:-1]):
        if stage.accept is None:
            raise ValueError(f"{index}.accept: every stage but the last needs accept")
    if stages[-1].accept is not None:
        raise ValueError(f"{len(stages) - 1}.accept: the last stage takes every row left")
    return stages


class EnsembleSpec(StrictSection):
    """Members run concurrently on the same inputs; one output is combined."""

    models: tuple[str, ...] = Field(
        min_length=2, max_length=MAX_STEPS, description="The members: 'name' or 'name:2'."
    )
    combine: Literal["mean", "vote"] = Field(
        description="mean: the element-wise mean of the output; vote: per row, the label most "
        "members answered (a tie goes to the earliest member)."
    )
    output: str = Field(description="The output combined; the others come from the first member.")

    @field_validator("models")
    @classmethod
    def _models_valid(cls, models: tuple[str, ...]) -> tuple[str, ...]:
        for model in models:
            _check_model_ref(model)
        if len(set(models)) != len(models):
            raise ValueError("a member is named twice")
        return models

    @property
    def refs(self) -> tuple[ModelRef, ...]:
        return tuple(ModelRef.parse(model) for model in self.models)


def composite_calls(
    pipeline: PipelineSpec | None,
    cascade: tuple[CascadeStage, ...] | None,
    ensemble: EnsembleSpec | None,
) -> list[tuple[str, ModelRef]]:
    """Each call a composite section makes: its role ("step 'clf'", "stage 1", "member 0")
    and the model it calls; empty for a model without one."""
    if pipeline is not None:
        return [(f"step {step.name!r}", step.ref) for step in pipeline.steps]
    if cascade is not None:
        return [(f"stage {index}", stage.ref) for index, stage in enumerate(cascade)]
    if ensemble is not None:
        return [(f"member {index}", ref) for index, ref in enumerate(ensemble.refs)]
    return []
