"""One row of the repository index."""

from __future__ import annotations

from dataclasses import dataclass

from serval.core.lifecycle.states import ServableState


@dataclass(frozen=True, slots=True)
class IndexEntry:
    """One row of the repository index. ``state``: AVAILABLE, LOADING or UNLOADING for a
    version in those states; START for a model or version not loaded, END for one that failed
    or was unloaded (adapters render them in their protocol's words)."""

    name: str
    version: int | None
    state: ServableState
    reason: str = ""
