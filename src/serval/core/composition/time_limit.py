"""A layer that gives up on a model call past the model's own time limit (a Python model's
``runtime_options.timeout_s``), counted from the request's arrival."""

from __future__ import annotations

import asyncio

from serval.core.composition.wrapper import WrappingServable
from serval.core.errors import DeadlineExceededError
from serval.core.servable import Servable
from serval.core.types import InferenceRequest, InferenceResponse


class TimeLimitedServable(WrappingServable):
    """A layer that answers ``DeadlineExceededError`` when ``inner`` has not answered within
    ``timeout_s`` of the request's arrival (waiting for a thread included). The call it gives
    up on is cancelled: one not started never runs, a running one is abandoned (see
    ``ThreadPoolServable``)."""

    __slots__ = ("_timeout_s",)

    def __init__(self, inner: Servable, timeout_s: float) -> None:
        super().__init__(inner)
        self._timeout_s = timeout_s

    async def predict(self, request: InferenceRequest) -> InferenceResponse:
        timeout_s = self._timeout_s
        try:
            async with asyncio.timeout(timeout_s) as scope:
                return await self.inner.predict(request)
        except TimeoutError:
            if not scope.expired():
                raise
        raise DeadlineExceededError(
            f"model {request.model_name!r} did not answer within its timeout_s ({timeout_s:g} s)"
        )
