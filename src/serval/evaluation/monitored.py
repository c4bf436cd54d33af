"""Which models are monitored, and how: learnt from the specs their versions load with.

Each ``StateChanged`` that carries a spec (a version loading or available) says what the
model's ``model.yaml`` is now; a ``monitoring`` section makes the model monitored, its absence
(an edit that removed it) makes it not. The prediction log is told at once, so sampling follows
``model.yaml`` edits without a restart.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from serval.core.events import StateChanged
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

    def on_state_changed(self, event: StateChanged) -> None:
        spec = event.spec
        if spec is not None:
            self.configure(event.id.name, spec)

    def configure(self, name: str, spec: ModelSpec) -> None:
        monitoring = spec.monitoring
        known = self._models.get(name)
        if monitoring is None:
            if known is not None:
                del self._models[name]
                self._on_change(name, None)
            return
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
