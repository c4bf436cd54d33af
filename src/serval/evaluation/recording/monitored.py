"""Which models are monitored, and how: learnt from the specs the repository accepts.

The lifecycle manager hands each accepted ``model.yaml`` to ``configure`` (its
``on_configured`` hook, at each reconcile; None when the model left the repository). A
``monitoring`` section makes the model monitored, its absence makes it not. The section reloads
no version (``model_spec.RELOAD_FREE_SECTIONS``): the prediction log is told at once, so
sampling follows ``model.yaml`` edits without a restart or a reload.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from serval.core.model_spec import ModelSpec
from serval.core.specs.monitoring import MonitoringSpec


@dataclass(frozen=True, slots=True)
class MonitoredModel:
    name: str
    monitoring: MonitoringSpec
    keys: frozenset[str]  # the model's key inputs and outputs (left out of features)
    folder: Path  # the model's folder: where the reference is, where retrain commands run


class MonitoredModels:
    def __init__(
        self,
        repository: Path,
        on_change: Callable[[str, MonitoredModel | None], None] = lambda _name, _model: None,
    ) -> None:
        self._repository = repository
        self._models: dict[str, MonitoredModel] = {}
        self._on_change = on_change

    def configure(self, name: str, spec: ModelSpec | None) -> None:
        monitoring = spec.monitoring if spec is not None else None
        known = self._models.get(name)
        if monitoring is None:
            if known is not None:
                del self._models[name]
                self._on_change(name, None)
            return
        assert spec is not None
        model = MonitoredModel(
            name,
            monitoring,
            frozenset(key.name for key in spec.keys),
            self._repository / name,
        )
        if model != known:
            self._models[name] = model
            self._on_change(name, model)

    def get(self, name: str) -> MonitoredModel | None:
        return self._models.get(name)

    def names(self) -> list[str]:
        return sorted(self._models)
