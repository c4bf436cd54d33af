"""Builds the servable of a composite model (a pipeline, a cascade, an ensemble) from its
spec: the base that ``Composition`` puts in place of a runtime's servable."""

from __future__ import annotations

from dataclasses import dataclass, field

from serval.core.composition.cascade import CascadeCounts, CascadeServable
from serval.core.composition.ensemble import EnsembleServable
from serval.core.composition.pipeline import PipelineServable
from serval.core.composition.provider import ServableProvider
from serval.core.model_spec import ModelSpec
from serval.core.servable import Servable


@dataclass(frozen=True, slots=True)
class CompositeServables:
    """A ``CompositeBase``: ``counts`` is where cascades count the rows each stage answered
    (the composition root hands the same object to the metrics)."""

    counts: CascadeCounts = field(default_factory=CascadeCounts)

    def __call__(self, name: str, spec: ModelSpec, provider: ServableProvider) -> Servable:
        """The servable of model ``name``; its metadata is derived here, by leasing each model
        it calls (raises ``ModelLoadError`` naming the step and tensor that do not fit)."""
        if spec.pipeline is not None:
            return PipelineServable(name, spec.pipeline, provider)
        if spec.cascade is not None:
            return CascadeServable(name, spec.cascade, provider, self.counts)
        if spec.ensemble is not None:
            return EnsembleServable(name, spec.ensemble, provider)
        raise ValueError(f"model {name!r} is not a composite model")
