"""How a composite servable (a pipeline, a cascade, an ensemble) reaches other models.

It never holds another model's servable: it leases one per call through a ``ServableProvider``
(the lifecycle manager implements it), so the other model's own layers (its batching, its
cache) apply, and unloading that model waits for the call as for any request. A model that
needs others says so in its spec (``ModelSpec.dependencies()``): the manager loads it only once
each of them is available, and reports it not ready while one is missing.
"""

from __future__ import annotations

from types import TracebackType
from typing import Protocol

from serval.core.servable import Servable
from serval.core.statistics import VersionStatistics


class ServableLease(Protocol):
    """A lease on one loaded version; released once, by ``async with`` or ``release()``."""

    @property
    def servable(self) -> Servable: ...

    @property
    def stats(self) -> VersionStatistics:
        """The version's statistics: a composite adds its calls to them, as a request would."""
        ...

    def release(self) -> None: ...

    async def __aenter__(self) -> ServableLease: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None: ...


class ServableProvider(Protocol):
    def lease(self, name: str, version: int | None = None) -> ServableLease:
        """A lease on ``version`` of model ``name`` (its highest available version when None).
        Raises ``ModelNotFoundError`` or ``ModelNotReadyError`` as a request would get."""
        ...
