"""The base of a layer: a servable that delegates everything to the servable it wraps."""

from __future__ import annotations

from serval.core.servable import Servable
from serval.core.types import InferenceRequest, InferenceResponse, ServableMetadata


class WrappingServable:
    """Delegates to ``inner``; a layer overrides what it changes (``predict``, usually) and
    inherits the rest, so the workload gauge and unloading see through every layer."""

    __slots__ = ("inner",)

    def __init__(self, inner: Servable) -> None:
        self.inner = inner

    @property
    def metadata(self) -> ServableMetadata:
        return self.inner.metadata

    async def predict(self, request: InferenceRequest) -> InferenceResponse:
        return await self.inner.predict(request)

    def workload(self) -> int:
        return self.inner.workload()

    async def close(self) -> None:
        await self.inner.close()
