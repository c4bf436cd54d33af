"""The precomputed layer: rows whose key a batch job answered are served from the store; the
rest go to the model or are refused (``precomputed`` in model.yaml, docs/caching.md).

SKELETON: to be written (issue 16).
"""

from __future__ import annotations

from serval.core.composition.layer_counters import LayerCounters
from serval.core.composition.stores import PrecomputedReader
from serval.core.composition.wrapper import WrappingServable
from serval.core.servable import Servable
from serval.core.specs.precomputed import PrecomputedSpec
from serval.core.types import ServableId


class PrecomputedServable(WrappingServable):
    """Answers rows from ``reader`` by key; the others from ``inner`` (or a 404)."""

    def __init__(
        self,
        inner: Servable,
        spec: PrecomputedSpec,
        reader: PrecomputedReader,
        id: ServableId,
        counters: LayerCounters,
    ) -> None:
        super().__init__(inner)
