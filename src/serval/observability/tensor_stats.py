"""Running statistics of the values of monitored inputs and outputs (``model.yaml``'s
``monitor``, ``range`` and ``classes``).

Each update is a handful of vectorised numpy calls over the whole tensor, never a Python loop
per element: in the common case (no NaN, nothing out of range) ``sum``, ``min`` and ``max``
only. Memory is constant per tensor, except class counts, which stop adding classes at
``max_classes`` and count further ones as ``other``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from serval.core.model_spec import ModelSpec
from serval.core.specs.tensors import TensorOverride
from serval.core.types import Tensor

MAX_CLASSES = 100
OTHER_CLASS = "other"
_MAX_LABEL_CHARS = 64
_NUMERIC_KINDS = frozenset("biuf")
_BINCOUNT_LIMIT = 4096  # non-negative integer labels below this are counted with bincount


@dataclass(slots=True)
class TensorStats:
    """What one tensor's values looked like since its version loaded.

    ``count`` counts present values (not NaN); ``missing`` counts NaN values; ``below`` and
    ``above`` count present values outside ``bounds``. ``minimum`` and ``maximum`` are NaN
    until a value is seen. Non-numeric tensors (BYTES) only feed ``classes``.
    """

    bounds: tuple[float, float] | None = None
    track_numbers: bool = True
    track_classes: bool = False
    max_classes: int = MAX_CLASSES
    count: int = 0
    missing: int = 0
    below: int = 0
    above: int = 0
    total: float = 0.0
    minimum: float = math.nan
    maximum: float = math.nan
    classes: dict[str, int] = field(default_factory=dict)

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else math.nan

    def update(self, data: np.ndarray[Any, Any]) -> None:
        if self.track_numbers and data.dtype.kind in _NUMERIC_KINDS:
            with np.errstate(invalid="ignore"):  # inf - inf is NaN, and handled below
                self._update_numbers(data.reshape(-1))
        if self.track_classes:
            self._update_classes(data.reshape(-1))

    def _update_numbers(self, flat: np.ndarray[Any, Any]) -> None:
        if flat.size == 0:
            return
        if flat.dtype.kind == "b":
            flat = flat.view(np.uint8)
        total = float(np.sum(flat, dtype=np.float64))
        if math.isnan(total):  # NaN present (or +inf and -inf together): drop the NaNs
            nan = np.isnan(flat)
            self.missing += int(np.count_nonzero(nan))
            flat = flat[~nan]
            if flat.size == 0:
                return
            total = float(np.sum(flat, dtype=np.float64))
            if math.isnan(total):  # +inf and -inf: the mean is over the finite values
                total = float(np.sum(flat[np.isfinite(flat)], dtype=np.float64))
        low, high = float(flat.min()), float(flat.max())
        self.count += int(flat.size)
        self.total += total
        if not low >= self.minimum:  # also true while minimum is NaN
            self.minimum = low
        if not high <= self.maximum:
            self.maximum = high
        bounds = self.bounds
        if bounds is not None and (low < bounds[0] or high > bounds[1]):
            self.below += int(np.count_nonzero(flat < bounds[0]))
            self.above += int(np.count_nonzero(flat > bounds[1]))

    def _update_classes(self, flat: np.ndarray[Any, Any]) -> None:
        if flat.dtype.kind == "f":
            nan = np.isnan(flat)
            if not self.track_numbers:
                self.missing += int(np.count_nonzero(nan))
            flat = flat[~nan]
        if flat.size == 0:
            return
        if flat.size == 1:  # one row: no need to sort
            self._add_classes([flat.item()], [1])
        elif flat.dtype.kind in "iu" and flat.min() >= 0 and flat.max() < _BINCOUNT_LIMIT:
            counts = np.bincount(flat)
            present = np.flatnonzero(counts)
            self._add_classes(present.tolist(), counts[present].tolist())
        else:
            values, counts = np.unique(flat, return_counts=True)
            self._add_classes(values.tolist(), counts.tolist())

    def _add_classes(self, values: list[Any], counts: list[int]) -> None:
        """One step per distinct value (a classifier has few), not per element."""
        classes = self.classes
        other = 0
        for value, count in zip(values, counts, strict=True):
            label = _class_label(value)
            if label in classes:
                classes[label] += count
            elif len(classes) < self.max_classes:
                classes[label] = count
            else:
                other += count
        if other:
            classes[OTHER_CLASS] = classes.get(OTHER_CLASS, 0) + other


def _class_label(value: object) -> str:
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    elif isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)[:_MAX_LABEL_CHARS]


@dataclass(slots=True)
class ServableMonitor:
    """The monitored inputs and outputs of one loaded version."""

    inputs: dict[str, TensorStats]
    outputs: dict[str, TensorStats]

    @classmethod
    def from_spec(cls, spec: ModelSpec, max_classes: int = MAX_CLASSES) -> ServableMonitor | None:
        """None when ``spec`` monitors nothing (the usual case: then monitoring costs nothing)."""
        inputs = _stats_for(spec.inputs, max_classes)
        outputs = _stats_for(spec.outputs, max_classes)
        if not inputs and not outputs:
            return None
        return cls(inputs, outputs)

    def observe_inputs(self, tensors: Iterable[Tensor]) -> None:
        _observe(self.inputs, tensors)

    def observe_outputs(self, tensors: Iterable[Tensor]) -> None:
        _observe(self.outputs, tensors)


def _stats_for(overrides: Iterable[TensorOverride], max_classes: int) -> dict[str, TensorStats]:
    return {
        o.name: TensorStats(
            bounds=o.range,
            track_numbers=o.monitor or o.range is not None,
            track_classes=o.classes,
            max_classes=max_classes,
        )
        for o in overrides
        if o.monitored
    }


def _observe(stats: Mapping[str, TensorStats], tensors: Iterable[Tensor]) -> None:
    if not stats:
        return
    for tensor in tensors:
        found = stats.get(tensor.name)
        if found is not None:
            found.update(tensor.data)
