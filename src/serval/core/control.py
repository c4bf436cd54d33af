"""The control plane: repository index, load and unload, whatever the protocol."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from serval.core.errors import InvalidInputError
from serval.core.lifecycle.index_entry import IndexEntry
from serval.core.lifecycle.manager import LifecycleManager
from serval.core.load_override import LoadOverride


class ControlPlane:
    def __init__(self, manager: LifecycleManager) -> None:
        self._manager = manager

    async def index(self, ready_only: bool = False) -> list[IndexEntry]:
        entries = await self._manager.index()
        if ready_only:
            entries = [e for e in entries if e.state == "READY"]
        return entries

    async def load(self, name: str, config: Mapping[str, Any] | None = None) -> None:
        """Load or reload ``name``; ``config`` (model.yaml's fields) replaces its model.yaml,
        except the operator's fields (``load_override``), which stay model.yaml's."""
        override = None
        if config is not None:
            override = LoadOverride.parse(config, name)
        await self._manager.load(name, override)

    async def unload(self, name: str) -> None:
        if not name:
            raise InvalidInputError("model name is empty")
        await self._manager.unload(name)
