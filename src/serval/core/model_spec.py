"""The schema of ``model.yaml``: parsed once into a frozen ``ModelSpec``.

Every field has a default, so a bare ``<name>/1/model.onnx`` needs no file at all.

Over 300 lines because the schema reads best whole (one class per section); the wave-2
sections (traffic, pipeline, monitoring, ...) are to live in modules of their own.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from serval.core.errors import ModelConfigError
from serval.core.lifecycle.version_policy import VersionPolicy
from serval.core.specs.composite import (
    CascadeStage,
    EnsembleSpec,
    PipelineSpec,
    check_cascade,
    composite_calls,
)
from serval.core.specs.keys import MAX_KEYS, KeySpec, unique_keys
from serval.core.specs.traffic import TrafficSpec
from serval.core.tensors.datatypes import DataType

_LABEL = re.compile(r"^[A-Za-z0-9_]+$")
# Bounds on what a model.yaml (or a load request's override of it) may ask the server to
# allocate: warm-up data, tensor declarations, queues.
MAX_WARMUP_BATCH_SIZE = 1024
MAX_DIMENSIONS = 16
MAX_DIMENSION = 2**31 - 1
MAX_TENSORS = 1024


# Fields of a model with a runtime (and versions to route between) that a composite model
# refuses.
_RUNTIME_ONLY = frozenset(
    {
        "traffic",
        "runtime",
        "max_batch_size",
        "instances",
        "dynamic_batching",
        "concurrency",
        "inputs",
        "outputs",
        "warmup",
        "runtime_options",
        "version_policy",
    }
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TensorOverride(_Strict):
    """Declares or corrects what the model file says about one input or output."""

    name: str = Field(description="Tensor name as the model file has it.")
    datatype: DataType | None = Field(default=None, description="Open Inference Protocol datatype.")
    shape: tuple[int, ...] | None = Field(
        default=None, description="Full shape, batch dimension included; -1 for variable sizes."
    )

    # Monitoring (see docs/metrics.md); each one makes serval watch this tensor's values.
    range: tuple[float, float] | None = Field(
        default=None,
        description="[min, max] the values should lie in: values outside are counted (for an "
        "output, a guardrail).",
    )
    monitor: bool = Field(
        default=False,
        description="Count missing (NaN) values and keep running count, mean, min and max.",
    )
    classes: bool = Field(
        default=False,
        description="The values are class labels: count them per class (at most 100 classes; "
        "the rest are counted as 'other').",
    )

    @field_validator("shape")
    @classmethod
    def _dims_valid(cls, shape: tuple[int, ...] | None) -> tuple[int, ...] | None:
        if shape is None:
            return None
        if any(dim < -1 or dim == 0 for dim in shape):
            raise ValueError("dimensions must be positive or -1 (variable)")
        if len(shape) > MAX_DIMENSIONS or any(dim > MAX_DIMENSION for dim in shape):
            raise ValueError(
                f"at most {MAX_DIMENSIONS} dimensions, each at most {MAX_DIMENSION} (or -1)"
            )
        return shape

    @field_validator("range")
    @classmethod
    def _range_ordered(cls, bounds: tuple[float, float] | None) -> tuple[float, float] | None:
        if bounds is not None and not bounds[0] <= bounds[1]:
            raise ValueError("range is [min, max] with min <= max")
        return bounds

    @property
    def monitored(self) -> bool:
        """Whether serval watches this tensor's values."""
        return self.monitor or self.classes or self.range is not None


class VersionPolicySpec(_Strict):
    """One of ``latest`` (with ``num_versions``), ``all`` or ``specific`` (with ``versions``)."""

    kind: Literal["latest", "all", "specific"] = "latest"
    num_versions: int = Field(default=1, ge=1)
    versions: tuple[int, ...] = ()

    @model_validator(mode="before")
    @classmethod
    def _accept_short_forms(cls, value: Any) -> Any:
        # Accept `latest`, `all`, `{latest: 2}`, `{specific: [1, 3]}` and Triton's long forms
        # `{latest: {num_versions: 2}}`, `{specific: {versions: [1]}}`, `{all: {}}`.
        if isinstance(value, str):
            return {"kind": value}
        if isinstance(value, Mapping) and len(value) == 1 and "kind" not in value:
            ((kind, arg),) = value.items()
            if kind == "latest":
                num = arg.get("num_versions", 1) if isinstance(arg, Mapping) else arg
                return {"kind": "latest", "num_versions": num}
            if kind == "specific":
                versions = arg.get("versions", []) if isinstance(arg, Mapping) else arg
                return {"kind": "specific", "versions": versions}
            if kind == "all":
                return {"kind": "all"}
        return value

    @model_validator(mode="after")
    def _specific_needs_versions(self) -> VersionPolicySpec:
        if self.kind == "specific" and not self.versions:
            raise ValueError("specific needs at least one version")
        if any(v < 1 for v in self.versions):
            raise ValueError("versions are positive integers")
        return self

    def to_policy(self) -> VersionPolicy:
        return VersionPolicy(self.kind, self.num_versions, tuple(self.versions))


class WarmupSpec(_Strict):
    """Requests run at load time, before the version takes traffic."""

    enabled: bool = True
    batch_size: int = Field(
        default=1,
        ge=1,
        le=MAX_WARMUP_BATCH_SIZE,
        description=f"Rows in each warm-up request (at most {MAX_WARMUP_BATCH_SIZE}).",
    )
    iterations: int = Field(default=1, ge=0, le=1000)


class DynamicBatchingSpec(_Strict):
    """How requests wait in the model's queue and merge into batches (docs/batching.md)."""

    mode: Literal["fixed", "adaptive"] = Field(
        default="fixed",
        description="fixed: batches follow max_queue_delay_us and preferred_batch_sizes. "
        "adaptive: serval learns the model's batch cost and picks the batch size and the wait "
        "to keep queue wait + execution under latency_slo_ms, refusing requests (REST 429, "
        "gRPC RESOURCE_EXHAUSTED) that would miss it. Adaptive needs max_batch_size > 0.",
    )
    latency_slo_ms: float | None = Field(
        default=None,
        gt=0,
        le=600_000,
        description="Adaptive mode's target, in milliseconds, for a request's queue wait + "
        "execution. Required with mode: adaptive, refused otherwise.",
    )
    max_queue_delay_us: int = Field(
        default=0,
        ge=0,
        le=10_000_000,
        description="Microseconds a batch may wait for more requests, counted from its first "
        "request; only while an instance is busy and the batch is below a preferred or the "
        "maximum size. Needs max_batch_size > 0.",
    )
    preferred_batch_sizes: tuple[int, ...] = Field(
        default=(),
        max_length=64,
        description="Batch sizes (rows) that are sent at once when reached, without waiting "
        "for max_queue_delay_us. Each at most max_batch_size.",
    )
    max_queue_size: int = Field(
        default=0,
        ge=0,
        le=10_000_000,
        description="Requests that may wait; one more is refused as overloaded (REST 429, gRPC "
        "RESOURCE_EXHAUSTED). 0: no bound.",
    )
    priority_levels: int = Field(
        default=0,
        ge=0,
        le=100,
        description="Priority levels 1 (highest) to N that the request parameter 'priority' "
        "selects; 0: priorities are ignored and requests run in arrival order.",
    )
    default_priority_level: int = Field(
        default=0,
        ge=0,
        description="Level of a request without priority (or priority 0); 0 means the lowest "
        "level, priority_levels.",
    )

    @field_validator("preferred_batch_sizes")
    @classmethod
    def _sizes_valid(cls, sizes: tuple[int, ...]) -> tuple[int, ...]:
        if any(size < 1 for size in sizes):
            raise ValueError("batch sizes are positive integers")
        return tuple(sorted(set(sizes)))

    @model_validator(mode="after")
    def _default_level_exists(self) -> DynamicBatchingSpec:
        if self.default_priority_level > self.priority_levels:
            raise ValueError(
                f"default_priority_level {self.default_priority_level} is above "
                f"priority_levels {self.priority_levels}"
            )
        return self

    @model_validator(mode="after")
    def _mode_fits(self) -> DynamicBatchingSpec:
        if self.mode == "fixed" and self.latency_slo_ms is not None:
            raise ValueError("latency_slo_ms needs mode: adaptive")
        if self.mode == "adaptive":
            if self.latency_slo_ms is None:
                raise ValueError("mode: adaptive needs latency_slo_ms")
            if self.max_queue_delay_us or self.preferred_batch_sizes:
                raise ValueError(
                    "mode: adaptive picks the wait and the batch sizes itself; remove "
                    "max_queue_delay_us and preferred_batch_sizes"
                )
        return self


class ConcurrencySpec(_Strict):
    """How much of the server's shared inference threads a model without a queue may use
    (docs/lifecycle.md#one-model-cannot-stall-the-others)."""

    limit: int | None = Field(
        default=None,
        ge=1,
        le=256,
        description="Requests of this model that may run at once on the shared inference "
        "threads. Default, and the most: one less than the server's inference threads "
        "(at least 1), so that a hung model always leaves a thread to the others.",
    )
    max_waiting: int = Field(
        default=10_000,
        ge=0,
        le=1_000_000,
        description="Requests that may wait for one of those (holding no thread); one more "
        "is refused as overloaded (REST 429, gRPC RESOURCE_EXHAUSTED, with Retry-After).",
    )


class ModelSpec(_Strict):
    """Everything ``model.yaml`` may say about a model; each field is optional."""

    runtime: str | None = Field(
        default=None,
        description="Runtime name (e.g. 'onnx'); chosen from the artifact's file name if absent.",
    )
    version_policy: VersionPolicySpec = Field(default_factory=VersionPolicySpec)
    labels: dict[str, int] = Field(
        default_factory=dict,
        max_length=256,
        description="TF Serving version labels, e.g. {stable: 1, canary: 2}.",
    )
    max_batch_size: int = Field(
        default=0,
        ge=0,
        le=MAX_DIMENSION,
        description="Largest batch (rows) the model runs at once; above 0, serval merges "
        "concurrent requests into batches. 0: the model does not batch.",
    )
    instances: int | None = Field(
        default=None,
        ge=1,
        le=256,
        description="Executions of the model that may run at once, each on its own thread. "
        "Default: 1 when the model batches or has a dynamic_batching section; otherwise the "
        "model shares the server's inference threads.",
    )
    dynamic_batching: DynamicBatchingSpec | None = Field(
        default=None,
        description="The model's queue: batching delay, preferred sizes, size bound, "
        "priorities (docs/batching.md).",
    )
    concurrency: ConcurrencySpec = Field(
        default_factory=ConcurrencySpec,
        description="A model without a queue: its share of the shared inference threads.",
    )
    inputs: tuple[TensorOverride, ...] = Field(default=(), max_length=MAX_TENSORS)
    outputs: tuple[TensorOverride, ...] = Field(default=(), max_length=MAX_TENSORS)
    warmup: WarmupSpec = Field(default_factory=WarmupSpec)
    runtime_options: dict[str, Any] = Field(
        default_factory=dict, description="Options of the runtime (see its docs page)."
    )
    parameters: dict[str, str | int | float | bool] = Field(
        default_factory=dict,
        max_length=256,
        description="Free-form values handed to the runtime and model.",
    )
    keys: tuple[KeySpec, ...] = Field(
        default=(),
        max_length=MAX_KEYS,
        description="Inputs the model never sees, returned untouched as outputs of the same "
        "name, row-aligned with the answers (docs/keys.md): `[request_id]` (BYTES keys) or "
        "`[{name: customer, datatype: INT64}]`. A key may not share a name with an input or "
        "output of the model (a load error).",
    )
    traffic: TrafficSpec | None = Field(
        default=None,
        description="How requests that name no version are routed over the served versions: "
        "weighted routes (A/B, sticky), a canary ramp with guardrails, a bandit, shadow copies "
        "(docs/rollout.md). A change of this section alone reloads no version.",
    )
    # Composite models (docs/composition.md): at most one of the three, and no version folders.
    pipeline: PipelineSpec | None = Field(
        default=None,
        description="A composite model: steps that each call a model of the repository, "
        "inputs wired from the pipeline's inputs or other steps' outputs.",
    )
    cascade: tuple[CascadeStage, ...] | None = Field(
        default=None,
        description="A composite model: stages tried in order per row; a row a stage accepts "
        "is answered by it, the rest go to the next stage as one batch.",
    )
    ensemble: EnsembleSpec | None = Field(
        default=None,
        description="A composite model: members run concurrently on the same inputs; one "
        "output is combined (mean or vote).",
    )

    @field_validator("cascade")
    @classmethod
    def _cascade_valid(
        cls, stages: tuple[CascadeStage, ...] | None
    ) -> tuple[CascadeStage, ...] | None:
        return None if stages is None else check_cascade(stages)

    @field_validator("labels")
    @classmethod
    def _labels_valid(cls, labels: dict[str, int]) -> dict[str, int]:
        for label, version in labels.items():
            if not _LABEL.match(label):
                raise ValueError(f"label {label!r} must match [A-Za-z0-9_]+")
            if version < 1:
                raise ValueError(f"label {label!r} must name a positive version")
        return labels

    _keys_unique = field_validator("keys")(unique_keys)

    @property
    def policy(self) -> VersionPolicy:
        return self.version_policy.to_policy()

    @property
    def composite(self) -> Literal["pipeline", "cascade", "ensemble"] | None:
        """Which composite section the spec has, if any: such a model has no runtime."""
        if self.pipeline is not None:
            return "pipeline"
        if self.cascade is not None:
            return "cascade"
        if self.ensemble is not None:
            return "ensemble"
        return None

    def dependencies(self) -> tuple[str, ...]:
        """Models this one needs loaded first (a composite's steps; none for a plain model),
        each once, in the order the spec names them."""
        calls = composite_calls(self.pipeline, self.cascade, self.ensemble)
        return tuple(dict.fromkeys(ref.name for _, ref in calls))

    def roles_of(self, model: str) -> tuple[str, ...]:
        """Where a composite spec calls ``model``: "step 'clf'", "stage 1", "member 0"."""
        calls = composite_calls(self.pipeline, self.cascade, self.ensemble)
        return tuple(role for role, ref in calls if ref.name == model)

    @model_validator(mode="after")
    def _composite_fits(self) -> ModelSpec:
        sections = [s for s in ("pipeline", "cascade", "ensemble") if getattr(self, s) is not None]
        if len(sections) > 1:
            raise ValueError(
                f"{' and '.join(sections)}: a composite model has one of pipeline, cascade "
                f"or ensemble"
            )
        if sections:
            # These configure a runtime and its queue: a composite has neither (its steps'
            # models batch and run as their own model.yaml says).
            refused = sorted(_RUNTIME_ONLY & self.model_fields_set)
            if refused:
                raise ValueError(
                    f"{', '.join(refused)}: not allowed with {sections[0]}: a composite model "
                    f"has one version and no runtime or queue of its own (set them on the "
                    f"models it calls)"
                )
        return self

    @model_validator(mode="after")
    def _batching_fits(self) -> ModelSpec:
        batching = self.dynamic_batching
        if batching is None:
            return self
        if batching.mode == "adaptive" and self.max_batch_size == 0:
            raise ValueError("dynamic_batching.mode adaptive needs max_batch_size > 0")
        if self.max_batch_size == 0 and (
            batching.max_queue_delay_us or batching.preferred_batch_sizes
        ):
            raise ValueError(
                "dynamic_batching.max_queue_delay_us and preferred_batch_sizes need "
                "max_batch_size > 0"
            )
        too_large = [size for size in batching.preferred_batch_sizes if size > self.max_batch_size]
        if too_large and self.max_batch_size:
            raise ValueError(
                f"dynamic_batching.preferred_batch_sizes {too_large} exceed max_batch_size "
                f"{self.max_batch_size}"
            )
        return self

    @model_validator(mode="after")
    def _concurrency_fits(self) -> ModelSpec:
        if "concurrency" in self.model_fields_set and self.scheduled:
            raise ValueError(
                "concurrency is for models without a queue; this one has max_batch_size, "
                "instances or dynamic_batching (its instances bound it)"
            )
        return self

    @property
    def scheduled(self) -> bool:
        """Whether the model's requests go through a queue (``core.batching``): it batches, or
        ``model.yaml`` sets ``instances`` or ``dynamic_batching``."""
        return (
            self.max_batch_size > 0
            or self.instances is not None
            or self.dynamic_batching is not None
        )

    @classmethod
    def parse(cls, data: object, *, source: str) -> ModelSpec:
        """Validate ``data`` (the YAML document); errors name ``source``, the key and the reason."""
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            raise ModelConfigError(f"{source}: expected a mapping at the top level")
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ModelConfigError(f"{source}: {describe_validation_error(exc, cls)}") from exc


def describe_validation_error(exc: ValidationError, schema: type[BaseModel] | None = None) -> str:
    """One line per problem: ``key.path: reason``. With ``schema``, an unknown top-level key
    names the known key it is likely a misspelling of."""
    parts = []
    for error in exc.errors():
        location = ".".join(str(part) for part in error["loc"]) or "(top level)"
        reason = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            reason = "unknown key"
            if schema is not None and len(error["loc"]) == 1:
                close = difflib.get_close_matches(str(error["loc"][0]), schema.model_fields, n=1)
                if close:
                    reason = f"unknown key (did you mean {close[0]}?)"
        parts.append(f"{location}: {reason}")
    return "; ".join(parts)
