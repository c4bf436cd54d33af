"""Which of a model's outputs evaluation reads: the prediction (compared with ground truth and
with the reference's label column) and, optionally, the class scores (auc, log_loss)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Literal

from serval.core.tensors.datatypes import DataType
from serval.core.types import TensorSpec

Task = Literal["classification", "regression"]


@dataclass(frozen=True, slots=True)
class PredictionOutputs:
    """The outputs that hold a model's prediction and class scores, and what it predicts."""

    task: Task
    prediction: str
    datatype: DataType  # the prediction output's: how ground truth is read (ground_truth.py)
    score: str | None = None


def prediction_outputs(
    task: Task,
    outputs: Sequence[TensorSpec],
    prediction: str | None = None,
    score: str | None = None,
    leave_out: Collection[str] = (),
) -> PredictionOutputs:
    """Resolve ``monitoring.prediction`` and ``monitoring.score`` against the model's outputs
    (those in ``leave_out``, its keys, aside): the prediction defaults to the only output.

    Raises ValueError naming the field when an output is unknown or the default is ambiguous."""
    by_name = {spec.name: spec for spec in outputs if spec.name not in leave_out}
    known = ", ".join(by_name) or "none"
    if prediction is None:
        if len(by_name) != 1:
            raise ValueError(
                f"monitoring.prediction: the model has outputs {known}; name the one that "
                "holds the prediction"
            )
        prediction = next(iter(by_name))
    if prediction not in by_name:
        raise ValueError(f"monitoring.prediction: no output {prediction!r} (outputs: {known})")
    if score is not None and score not in by_name:
        raise ValueError(f"monitoring.score: no output {score!r} (outputs: {known})")
    return PredictionOutputs(task, prediction, by_name[prediction].datatype, score)
