"""The features layer: fills one model input from an online feature store by each row's
entity before the model runs (``features`` in model.yaml, docs/caching.md).

SKELETON: to be written (issue 16).
"""

from __future__ import annotations

from serval.core.composition.layer_counters import LayerCounters
from serval.core.composition.stores import FeatureStore
from serval.core.composition.wrapper import WrappingServable
from serval.core.servable import Servable
from serval.core.specs.features import FeaturesSpec
from serval.core.types import ServableId


class FeaturesServable(WrappingServable):
    """Takes the entity input off each request, looks up its fields, fills ``spec.into``."""

    def __init__(
        self,
        inner: Servable,
        spec: FeaturesSpec,
        store: FeatureStore,
        id: ServableId,
        counters: LayerCounters,
    ) -> None:
        super().__init__(inner)
