"""Per-model metrics from core events: lifecycle states, load times and failures, and the
values of monitored inputs and outputs.

Label values come only from the model repository (model names, versions), from the
``model.yaml`` (tensor names) and, for class counts, from the model's outputs capped at
``MAX_CLASSES`` per tensor; never from a client.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.metrics_core import Metric

from serval.core.errors import InvalidInputError
from serval.core.events import PredictionEvent, StateChanged
from serval.core.lifecycle.states import ServableId, ServableState
from serval.core.model_spec import ModelSpec
from serval.observability.instruments import CounterVec, GaugeVec, Labels, gauge_family
from serval.observability.tensor_stats import ServableMonitor, TensorStats

_MODEL = ("model", "version")
_STATES = tuple(ServableState)


class ModelMetrics:
    """Subscribe ``on_state_changed`` and ``on_prediction``; ``collect`` yields the families."""

    def __init__(self) -> None:
        self.models: set[str] = set()  # every name the repository has had: safe label values
        self._labels: dict[ServableId, Labels] = {}
        self._state = GaugeVec(
            "serval_model_state",
            "1 for the state each model version is in (START, LOADING, AVAILABLE, UNLOADING, "
            "END), 0 for the others.",
            (*_MODEL, "state"),
        )
        self._load_seconds = GaugeVec(
            "serval_model_load_duration_seconds",
            "How long the last successful load of the version took, warm-up included.",
            _MODEL,
        )
        self._load_failures = CounterVec(
            "serval_model_load_failures_total", "Failed loads of the version.", _MODEL
        )
        self._monitors: dict[ServableId, tuple[object, ServableMonitor]] = {}
        # Whether any version monitors a tensor (else observe_tensors has nothing to do).
        self.monitoring = False

    def labels(self, servable: ServableId) -> Labels:
        labels = self._labels.get(servable)
        if labels is None:
            labels = self._labels[servable] = (servable.name, str(servable.version))
        return labels

    # -- events -----------------------------------------------------------------------------

    def on_state_changed(self, event: StateChanged) -> None:
        self.models.add(event.id.name)
        labels = self.labels(event.id)
        for state in _STATES:
            self._state.set((*labels, state.value), 1.0 if state is event.state else 0.0)
        if event.state is ServableState.AVAILABLE:
            if event.duration_s is not None:
                self._load_seconds.set(labels, event.duration_s)
            if event.spec is not None:
                self._watch(event.id, event.spec)
        elif event.state is ServableState.END and event.error is not None:
            self._load_failures.inc(labels)

    def _watch(self, servable: ServableId, spec: ModelSpec) -> None:
        """Monitor the tensors the spec asks for; a reload with the same monitoring keeps the
        running statistics, a changed one starts afresh."""
        key = (spec.inputs, spec.outputs)
        current = self._monitors.get(servable)
        if current is not None and current[0] == key:
            return
        monitor = ServableMonitor.from_spec(spec)
        if monitor is None:
            self._monitors.pop(servable, None)
        else:
            self._monitors[servable] = (key, monitor)
        self.monitoring = bool(self._monitors)

    def observe_tensors(self, event: PredictionEvent) -> None:
        watched = self._monitors.get(event.id)
        if watched is None:
            return
        monitor = watched[1]
        # Inputs the model saw, failed or not; not those validation refused.
        if not isinstance(event.error, InvalidInputError):
            monitor.observe_inputs(event.request.inputs)
        if event.response is not None:
            monitor.observe_outputs(event.response.outputs)

    # -- exposition -------------------------------------------------------------------------

    def collect(self) -> Iterator[Metric]:
        yield self._state.family()
        yield self._load_seconds.family()
        yield self._load_failures.family()
        for kind in ("input", "output"):
            yield from self._tensor_families(kind)

    def _tensor_families(self, kind: str) -> Iterator[Metric]:
        label_names = (*_MODEL, kind)
        rows: list[tuple[Labels, TensorStats]] = []
        for servable, (_, monitor) in self._monitors.items():
            tensors = monitor.inputs if kind == "input" else monitor.outputs
            rows.extend(((*self.labels(servable), name), stats) for name, stats in tensors.items())
        numeric = [(labels, s) for labels, s in rows if s.track_numbers]
        counters = CounterVec(
            f"serval_{kind}_values_total",
            f"Values of monitored {kind}s seen, NaN excluded.",
            label_names,
        )
        missing = CounterVec(
            f"serval_{kind}_missing_total",
            f"Missing (NaN) values of monitored {kind}s.",
            label_names,
        )
        outside = CounterVec(
            f"serval_{kind}_out_of_range_total",
            f"Values of {kind}s outside the range model.yaml declares, by side (below, above).",
            (*label_names, "side"),
        )
        classes = CounterVec(
            f"serval_{kind}_class_total",
            f"Values of {kind}s declared 'classes: true', per class (at most 100 classes per "
            f"{kind}; the rest count as 'other').",
            (*label_names, "class"),
        )
        for labels, stats in rows:
            missing.inc(labels, stats.missing)
            if stats.bounds is not None:
                outside.inc((*labels, "below"), stats.below)
                outside.inc((*labels, "above"), stats.above)
            for label, count in stats.classes.items():
                classes.inc((*labels, label), count)
        for labels, stats in numeric:
            counters.inc(labels, stats.count)
        yield counters.family()
        yield missing.family()
        yield outside.family()
        yield classes.family()
        for stat in ("mean", "min", "max"):
            yield gauge_family(
                f"serval_{kind}_value_{stat}",
                f"Running {stat} of the values of monitored {kind}s since the version loaded "
                f"(NaN until a value is seen).",
                label_names,
                ((labels, _stat(s, stat)) for labels, s in numeric),
            )


def _stat(stats: TensorStats, name: str) -> float:
    if name == "mean":
        return stats.mean
    return stats.minimum if name == "min" else stats.maximum
