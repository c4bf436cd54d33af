"""Triton's model repository extension: the core's servable states as the index reports them."""

from __future__ import annotations

from serval.core.lifecycle.states import ServableState

# The states Triton's repository index reports (READY, LOADING, UNLOADING, UNAVAILABLE): a
# version never loaded (START) or gone (END, failed or unloaded) is UNAVAILABLE.
INDEX_STATES: dict[ServableState, str] = {
    ServableState.START: "UNAVAILABLE",
    ServableState.LOADING: "LOADING",
    ServableState.AVAILABLE: "READY",
    ServableState.UNLOADING: "UNLOADING",
    ServableState.END: "UNAVAILABLE",
}


def index_state(state: ServableState) -> str:
    """The state string of a repository index row."""
    return INDEX_STATES[state]
