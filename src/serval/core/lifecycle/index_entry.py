"""One row of the repository index."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class IndexEntry:
    """One row of the repository index (Triton's states: READY, LOADING, UNLOADING,
    UNAVAILABLE)."""

    name: str
    version: int | None
    state: str
    reason: str = ""
