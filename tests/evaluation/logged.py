"""Logged predictions and labels built from numpy arrays, as the prediction log writes them."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson

from serval.core.types import Tensor
from serval.evaluation.recording.tensor_log import encode_tensors
from serval.storage.evaluation import Label, LabelledPrediction, LoggedPrediction


def logged(
    inputs: dict[str, np.ndarray[Any, Any]],
    outputs: dict[str, np.ndarray[Any, Any]] | None = None,
    timestamp: float = 1_000.0,
) -> LoggedPrediction:
    """A logged request of ``inputs`` answered ``outputs``."""
    first = next(iter(inputs.values()))
    return LoggedPrediction(
        model="m",
        version=1,
        request_id=None,
        timestamp=timestamp,
        role="primary",
        latency_ms=1.0,
        rows=int(first.shape[0]) if first.ndim else 1,
        keys=None,
        inputs=encode_tensors(Tensor.from_numpy(n, a) for n, a in inputs.items()),
        outputs=encode_tensors(Tensor.from_numpy(n, a) for n, a in (outputs or {}).items()),
    )


def labelled(
    outputs: dict[str, np.ndarray[Any, Any]],
    value: object,
    row: int | None = None,
    timestamp: float = 1_000.0,
) -> LabelledPrediction:
    """A request answered ``outputs`` and labelled ``value`` (JSON), for ``row`` or all rows."""
    prediction = logged({"x": np.zeros((1, 1), np.float32)}, outputs, timestamp)
    return LabelledPrediction(prediction, Label(orjson.dumps(value), row, timestamp + 1))
