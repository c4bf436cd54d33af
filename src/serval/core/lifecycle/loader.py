"""Loaders: cheap to build, ``load()`` does the heavy work (in a worker thread)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from serval.core.model_spec import ModelSpec
from serval.core.servable import Predictor


@dataclass(frozen=True, slots=True)
class LoadRequest:
    """Everything a runtime needs to load one version."""

    name: str
    version: int
    path: Path
    spec: ModelSpec


class Loader(Protocol):
    def load(self) -> Predictor:
        """Load and warm up the version; raise with a readable reason on failure."""
        ...


# Chooses the runtime for a version and builds its loader; raises ModelConfigError when no
# runtime fits or its options are wrong. Supplied by the composition root.
LoaderFactory = Callable[[LoadRequest], Loader]
