"""A version's servable, built from a base and the layers its spec asks for.

The base runs the runtime's ``Predictor``: a ``ThreadPoolServable`` (the shared inference
pool) or a ``BatchingServable`` (a queue and threads of its own). Each layer wraps the servable
built so far (cache, features, precomputed answers and keys join as layers), innermost first.
The composition root (``app.py``) chooses the base and the plan; the lifecycle manager builds
each version it loads with it and hands over itself as the ``ServableProvider``.

A composite model (a pipeline, cascade or ensemble) has no runtime: its base is a composite
servable (``composite_base``) that calls other models through the provider, and the same plan
wraps it, so every layer (keys, cache) applies to composite and plain models alike.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from serval.core.composition.composite import CompositeServables
from serval.core.composition.provider import ServableProvider
from serval.core.model_spec import ModelSpec
from serval.core.servable import Predictor, Servable
from serval.core.types import ServableId


class Layer(Protocol):
    def __call__(self, servable: Servable, spec: ModelSpec) -> Servable:
        """A servable that wraps ``servable`` (and delegates its ``workload()``)."""
        ...


# The servable around the runtime's predictor.
BaseServable = Callable[[Predictor, ModelSpec], Servable]
# The servable of a composite model ``name``, which reaches the models it calls through the
# provider.
CompositeBase = Callable[[str, ModelSpec, ServableProvider], Servable]
# The layers a spec asks for around version ``ServableId``, innermost first. A layer that
# reaches other models closes over the provider; one that keeps state per version (a cache)
# over the id.
LayerPlan = Callable[[ModelSpec, ServableProvider, ServableId], Sequence[Layer]]


class ServableBuilder(Protocol):
    """What the lifecycle manager calls to turn a loaded predictor into a servable."""

    def __call__(
        self, predictor: Predictor, spec: ModelSpec, provider: ServableProvider, id: ServableId
    ) -> Servable: ...

    def composite(self, id: ServableId, spec: ModelSpec, provider: ServableProvider) -> Servable:
        """The servable of composite model ``id.name`` (``spec.composite`` is set)."""
        ...


def no_layers(spec: ModelSpec, provider: ServableProvider, id: ServableId) -> Sequence[Layer]:
    return ()


@dataclass(frozen=True, slots=True)
class Composition:
    """A ``ServableBuilder``: the base (the runtime's, or a composite servable), then each
    layer of the plan."""

    base: BaseServable
    plan: LayerPlan = no_layers
    composite_base: CompositeBase = field(default_factory=CompositeServables)

    def __call__(
        self, predictor: Predictor, spec: ModelSpec, provider: ServableProvider, id: ServableId
    ) -> Servable:
        return self.wrap(self.base(predictor, spec), spec, provider, id)

    def composite(self, id: ServableId, spec: ModelSpec, provider: ServableProvider) -> Servable:
        return self.wrap(self.composite_base(id.name, spec, provider), spec, provider, id)

    def wrap(
        self, servable: Servable, spec: ModelSpec, provider: ServableProvider, id: ServableId
    ) -> Servable:
        """``servable`` inside each layer of the plan for version ``id``, innermost first."""
        for layer in self.plan(spec, provider, id):
            servable = layer(servable, spec)
        return servable
