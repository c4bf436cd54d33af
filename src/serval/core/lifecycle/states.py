"""Servable states: they only move forward, and a health field holds any error."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

# A value of the core's vocabulary (composition names the version it wraps by it too); here
# for the many that import it with the states.
from serval.core.types import ServableId

__all__ = ["ServableId", "ServableState", "ServableStatus", "StateMachine"]


class ServableState(StrEnum):
    START = "START"
    LOADING = "LOADING"
    AVAILABLE = "AVAILABLE"
    UNLOADING = "UNLOADING"
    END = "END"

    @property
    def rank(self) -> int:
        return _ORDER.index(self)


_ORDER = list(ServableState)


@dataclass(frozen=True, slots=True)
class ServableStatus:
    """A snapshot of one version's place in its lifecycle; ``error`` is its health."""

    id: ServableId
    state: ServableState
    error: str | None = None


class StateMachine:
    """Holds a state and refuses to move it backwards."""

    __slots__ = ("_state",)

    def __init__(self) -> None:
        self._state = ServableState.START

    @property
    def state(self) -> ServableState:
        return self._state

    def advance(self, new: ServableState) -> None:
        if new.rank < self._state.rank:
            raise RuntimeError(f"servable state cannot move back from {self._state} to {new}")
        self._state = new
