"""Runtime registry: runtime name -> loader class, imported only when a model needs it.

The runtime is the one ``model.yaml`` names or, without one, the one whose artifact file name is
in the version folder. Third-party packages add runtimes through the ``serval.runtimes``
entry-point group (name -> ``module:LoaderClass``).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Protocol

from serval.core.errors import ModelConfigError
from serval.core.loader import Loader, LoadRequest


class LoaderClass(Protocol):
    def __call__(self, request: LoadRequest) -> Loader: ...


@dataclass(frozen=True, slots=True)
class RuntimeEntry:
    name: str
    target: str  # "module:Class", imported on first use
    artifacts: tuple[str, ...]  # file names this runtime recognises
    extra: str  # pip extra that installs it


BUILTIN_RUNTIMES: tuple[RuntimeEntry, ...] = (
    RuntimeEntry("onnx", "serval.runtimes.onnx:OnnxLoader", ("model.onnx",), "onnx"),
)


class RuntimeRegistry:
    """Chooses a runtime for each version and builds its loader (a ``LoaderFactory``)."""

    def __init__(self, entries: Mapping[str, RuntimeEntry]) -> None:
        self._entries = dict(entries)

    @classmethod
    def default(cls) -> RuntimeRegistry:
        entries = {entry.name: entry for entry in BUILTIN_RUNTIMES}
        for point in entry_points(group="serval.runtimes"):
            entries[point.name] = RuntimeEntry(
                point.name, point.value, (), point.dist.name if point.dist else point.name
            )
        return cls(entries)

    @property
    def names(self) -> list[str]:
        return sorted(self._entries)

    def __call__(self, request: LoadRequest) -> Loader:
        entry = self._choose(request)
        module_name, _, class_name = entry.target.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ModelConfigError(
                f"runtime {entry.name!r} is not installed ({exc.name} is missing); "
                f"install it with: pip install 'serval[{entry.extra}]'"
            ) from exc
        loader_class: LoaderClass = getattr(module, class_name)
        return loader_class(request)

    def _choose(self, request: LoadRequest) -> RuntimeEntry:
        named = request.spec.runtime
        if named is not None:
            entry = self._entries.get(named)
            if entry is None:
                raise ModelConfigError(
                    f"model.yaml: runtime: unknown runtime {named!r}; known: "
                    f"{', '.join(self.names)}"
                )
            return entry
        present = {path.name for path in request.path.iterdir()} if request.path.is_dir() else set()
        for entry in self._entries.values():
            if present.intersection(entry.artifacts):
                return entry
        known = ", ".join(a for e in self._entries.values() for a in e.artifacts)
        raise ModelConfigError(
            f"no model artifact in {request.path} (expected one of: {known}), "
            f"and model.yaml names no runtime"
        )
