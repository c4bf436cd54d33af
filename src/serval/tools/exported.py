"""A converted model and what ``serval convert`` checks it against."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from serval.core.types import InferenceRequest, TensorSpec

CONVERTERS_HINT = "install the converters with: pip install 'serval-server[convert]'"


@dataclass(frozen=True, slots=True)
class Exported:
    """The ONNX model (serialized), the native version's interface, and the native version's
    answers (``expected``) to the request the ONNX version is given (``onnx_request``)."""

    model: bytes
    inputs: Sequence[TensorSpec]
    outputs: Sequence[TensorSpec]
    onnx_request: InferenceRequest
    expected: dict[str, np.ndarray[Any, Any]]
    rows: int
