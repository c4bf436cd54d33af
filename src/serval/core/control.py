"""The control plane: repository index, load and unload, whatever the protocol."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from serval.core.errors import InvalidInputError, UnsupportedError
from serval.core.lifecycle.index_entry import IndexEntry
from serval.core.lifecycle.manager import LifecycleManager
from serval.core.lifecycle.states import ServableState
from serval.core.load_override import LoadOverride
from serval.core.routing.traffic import TrafficController

__all__ = ["CONFIG_PARAMETER", "ControlPlane", "IndexEntry"]

# The load parameter that replaces a model's model.yaml: a JSON object of its fields (Triton's
# repository extension passes the model's configuration the same way).
CONFIG_PARAMETER = "config"
_FILE_PREFIX = "file:"  # Triton's file overrides: "file:<version>/<file name>"


class ControlPlane:
    def __init__(self, manager: LifecycleManager, traffic: TrafficController | None = None) -> None:
        self._manager = manager
        self._traffic = traffic

    # -- traffic policies (docs/rollout.md) -------------------------------------------------

    def traffic(self, name: str) -> dict[str, Any]:
        """The model's live traffic policy and its state."""
        return self._traffic_controller().state(name)

    def set_traffic(self, name: str, body: object) -> dict[str, Any]:
        """Replace the model's live traffic policy (``body``: the model.yaml ``traffic``
        section); it lasts until that section changes in model.yaml, or a restart."""
        return self._traffic_controller().put(name, body)

    def rollback_traffic(self, name: str, to: object = None) -> dict[str, Any]:
        """All of the model's traffic to version ``to``, else to its stable version."""
        return self._traffic_controller().rollback(name, to)

    def _traffic_controller(self) -> TrafficController:
        if self._traffic is None:
            raise UnsupportedError("traffic policies are not enabled on this server")
        return self._traffic

    async def index(self, ready_only: bool = False) -> list[IndexEntry]:
        entries = await self._manager.index()
        if ready_only:
            entries = [e for e in entries if e.state is ServableState.AVAILABLE]
        return entries

    async def load(self, name: str, parameters: Mapping[str, Any] | None = None) -> None:
        """Load or reload ``name``. ``parameters`` are the load request's, as the adapter
        received them (strings, bytes, numbers, booleans), validated here for every protocol:
        ``config`` (model.yaml's fields as a JSON object) replaces its model.yaml,
        except the operator's fields (``load_override``), which stay model.yaml's."""
        if not name:
            raise InvalidInputError("model name is empty")
        override = None
        config = load_config(parameters or {})
        if config is not None:
            override = LoadOverride.parse(config, name)
        await self._manager.load(name, override)

    async def unload(self, name: str) -> None:
        if not name:
            raise InvalidInputError("model name is empty")
        await self._manager.unload(name)


def load_config(parameters: Mapping[str, Any]) -> dict[str, Any] | None:
    """The ``config`` parameter of a load request, parsed, or None. File overrides are refused:
    the model's files come from the repository."""
    files = sorted(key for key in parameters if key.startswith(_FILE_PREFIX))
    if files:
        raise InvalidInputError(
            f"load parameters {', '.join(files)}: file overrides are not supported; put the "
            f"files in the model repository"
        )
    config = parameters.get(CONFIG_PARAMETER)
    if config is None:
        return None
    if isinstance(config, bytes):
        try:
            config = config.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidInputError(f"load parameter 'config' is not UTF-8: {exc}") from exc
    if not isinstance(config, str):
        raise InvalidInputError(
            f"load parameter 'config' must be a JSON object in a string, received "
            f"{type(config).__name__}"
        )
    try:
        parsed = json.loads(config)
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"load parameter 'config' is not valid JSON: {exc}") from exc
    if not isinstance(parsed, dict):
        raise InvalidInputError(
            f"load parameter 'config' must be a JSON object, received {type(parsed).__name__}"
        )
    return parsed
