"""The schema of ``model.yaml``: parsed once into a frozen ``ModelSpec``.

Every field has a default, so a bare ``<name>/1/model.onnx`` needs no file at all.

The top level and the version policy live here; every other section is a module of
``core.specs`` (tensors, scheduling, keys, traffic, composite models).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from serval.core.errors import ModelConfigError
from serval.core.lifecycle.version_policy import VersionPolicy
from serval.core.specs.cache import CacheSpec
from serval.core.specs.composite import (
    CascadeStage,
    EnsembleSpec,
    PipelineSpec,
    check_cascade,
    composite_calls,
)
from serval.core.specs.features import FeaturesSpec
from serval.core.specs.keys import MAX_KEYS, KeySpec, unique_keys
from serval.core.specs.monitoring import MonitoringSpec
from serval.core.specs.precomputed import PrecomputedSpec
from serval.core.specs.scheduling import ConcurrencySpec, DynamicBatchingSpec, WarmupSpec
from serval.core.specs.strict import StrictSection
from serval.core.specs.tensors import MAX_DIMENSION, MAX_TENSORS, TensorOverride
from serval.core.specs.traffic import TrafficSpec

_LABEL = re.compile(r"^[A-Za-z0-9_]+$")


# Sections whose change applies without reloading a version (the manager's ``on_configured``
# hands them to the traffic controller and continuous evaluation): a version's fingerprint
# leaves them out.
RELOAD_FREE_SECTIONS = frozenset({"traffic", "monitoring"})

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


class VersionPolicySpec(StrictSection):
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


class ModelSpec(StrictSection):
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
    monitoring: MonitoringSpec | None = Field(
        default=None,
        description="Continuous evaluation (docs/evaluation.md): a sampled prediction log, "
        "ground truth joined from the feedback API, quality per version, drift against the "
        "training reference, alerts and retraining triggers.",
    )
    cache: CacheSpec | None = Field(
        default=None,
        description="Answers kept per version and returned for an identical request without "
        "running the model (docs/caching.md): memory (an LRU per version) or redis (shared "
        "by replicas), with a TTL.",
    )
    features: FeaturesSpec | None = Field(
        default=None,
        description="One input filled from Redis hashes by each row's entity before the model "
        "runs (online feature lookup, docs/caching.md).",
    )
    precomputed: PrecomputedSpec | None = Field(
        default=None,
        description="Answers a batch job wrote by key (`serval batch --to`), served for the "
        "rows that have one; the others go to the model or get a 404 (docs/caching.md).",
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
