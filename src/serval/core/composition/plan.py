"""The server's layer plan: which layers a version gets from its spec, innermost first.

    keys (outermost) > precomputed > cache > features > base (batching or the thread pool)

- keys: taken off first and put back last, so nothing inside ever sees them.
- precomputed: rows with a precomputed answer never reach the cache or the model.
- cache: a hit skips the feature lookup and the queue; the key covers the request as the
  client sent it (the entity, not the features looked up for it).
- features: fills the model's input just before the base runs.

A model that asks for none of them gets no layer: its requests pay for nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

from serval.core.composition.cache import CachingServable
from serval.core.composition.features import FeaturesServable
from serval.core.composition.keys import keys_plan
from serval.core.composition.layer_counters import LayerCounters
from serval.core.composition.layers import Layer
from serval.core.composition.precomputed import PrecomputedServable
from serval.core.composition.provider import ServableProvider
from serval.core.composition.stores import LookupStores
from serval.core.model_spec import ModelSpec
from serval.core.servable import Servable
from serval.core.types import ServableId


class ServerLayerPlan:
    """A ``LayerPlan`` over ``stores``, counting into ``counters``."""

    def __init__(self, stores: LookupStores, counters: LayerCounters) -> None:
        self.stores = stores
        self.counters = counters

    def __call__(
        self, spec: ModelSpec, provider: ServableProvider, id: ServableId
    ) -> Sequence[Layer]:
        layers: list[Layer] = []
        if spec.features is not None:
            layers.append(partial(self._features, id=id))
        if spec.cache is not None:
            layers.append(partial(self._cache, id=id))
        if spec.precomputed is not None:
            layers.append(partial(self._precomputed, id=id))
        layers.extend(keys_plan(spec))
        return layers

    def _features(self, servable: Servable, spec: ModelSpec, *, id: ServableId) -> Servable:
        assert spec.features is not None
        store = self.stores.feature_store(spec.features)
        return FeaturesServable(servable, spec.features, store, id, self.counters)

    def _cache(self, servable: Servable, spec: ModelSpec, *, id: ServableId) -> Servable:
        assert spec.cache is not None
        cache = self.stores.prediction_cache(spec.cache, id)
        return CachingServable(servable, cache, id, self.counters, spec.cache.inputs)

    def _precomputed(self, servable: Servable, spec: ModelSpec, *, id: ServableId) -> Servable:
        assert spec.precomputed is not None
        reader = self.stores.precomputed_reader(spec.precomputed)
        return PrecomputedServable(servable, spec.precomputed, reader, id, self.counters)
