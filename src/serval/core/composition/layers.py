"""A version's servable, built from a base and the layers its spec asks for.

The base runs the runtime's ``Predictor``: a ``ThreadPoolServable`` (the shared inference
pool) or a ``BatchingServable`` (a queue and threads of its own). Each layer wraps the servable
built so far (cache, features, precomputed answers and keys join as layers), innermost first.
The composition root (``app.py``) chooses the base and the plan; the lifecycle manager builds
each version it loads with it and hands over itself as the ``ServableProvider``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from serval.core.composition.provider import ServableProvider
from serval.core.model_spec import ModelSpec
from serval.core.servable import Predictor, Servable


class Layer(Protocol):
    def __call__(self, servable: Servable, spec: ModelSpec) -> Servable:
        """A servable that wraps ``servable`` (and delegates its ``workload()``)."""
        ...


# The servable around the runtime's predictor.
BaseServable = Callable[[Predictor, ModelSpec], Servable]
# The layers a spec asks for, innermost first. A layer that reaches other models closes over
# the provider.
LayerPlan = Callable[[ModelSpec, ServableProvider], Sequence[Layer]]


class ServableBuilder(Protocol):
    """What the lifecycle manager calls to turn a loaded predictor into a servable."""

    def __call__(
        self, predictor: Predictor, spec: ModelSpec, provider: ServableProvider
    ) -> Servable: ...


def no_layers(spec: ModelSpec, provider: ServableProvider) -> Sequence[Layer]:
    return ()


@dataclass(frozen=True, slots=True)
class Composition:
    """A ``ServableBuilder``: the base, then each layer of the plan."""

    base: BaseServable
    plan: LayerPlan = no_layers

    def __call__(
        self, predictor: Predictor, spec: ModelSpec, provider: ServableProvider
    ) -> Servable:
        servable = self.base(predictor, spec)
        for layer in self.plan(spec, provider):
            servable = layer(servable, spec)
        return servable
