"""What the tabular runtimes (scikit-learn, XGBoost, LightGBM) share.

A tabular model takes one input, ``input``, of shape ``[-1, n_features]`` and has one output per
method, named after it as MLServer does: ``predict`` and, for classifiers, ``predict_proba``.
Only the outputs a request selects are computed. ``model.yaml`` ``inputs``/``outputs`` may
correct a datatype or shape (e.g. declare the input FP32).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from serval.core.errors import InvalidInputError, ModelLoadError
from serval.core.model_spec import ModelSpec
from serval.core.tensors.datatypes import DataType
from serval.core.types import (
    InferenceRequest,
    InferenceResponse,
    InferenceTimings,
    ServableMetadata,
    TensorSpec,
)
from serval.runtimes.encoding import to_tensor
from serval.runtimes.options import apply_overrides

INPUT_NAME = "input"
PREDICT = "predict"
PREDICT_PROBA = "predict_proba"

# (rows, names of the outputs wanted) -> {name: array}; called from several threads.
Compute = Callable[[np.ndarray[Any, Any], Sequence[str]], Mapping[str, np.ndarray[Any, Any]]]


def input_spec(n_features: int | None, datatype: DataType = DataType.FP64) -> TensorSpec:
    return TensorSpec(INPUT_NAME, datatype, (-1, n_features if n_features else -1))


def build_metadata(
    platform: str,
    inputs: Sequence[TensorSpec],
    outputs: Sequence[TensorSpec],
    spec: ModelSpec,
    source: str,
    parameters: Mapping[str, str] | None = None,
) -> ServableMetadata:
    """The metadata, with ``model.yaml``'s ``inputs``/``outputs`` corrections applied."""
    return ServableMetadata(
        platform=platform,
        inputs=apply_overrides(inputs, spec.inputs, "inputs", source),
        outputs=apply_overrides(outputs, spec.outputs, "outputs", source),
        parameters=dict(parameters or {}),
    )


def label_datatype(classes: np.ndarray[Any, Any]) -> DataType:
    """The datatype of a classifier's predicted labels, from its classes."""
    kind = classes.dtype.kind
    if kind in "OUS":
        return DataType.BYTES
    if kind == "b":
        return DataType.BOOL
    if kind in "iu":
        return DataType.INT64
    return DataType.FP64


class TabularPredictor:
    """Runs ``compute`` for the outputs a request selects; thread-safe when ``compute`` is."""

    def __init__(
        self,
        metadata: ServableMetadata,
        compute: Compute,
        framework: str,
        model: Any,
        input_errors: tuple[type[Exception], ...] = (ValueError,),
    ) -> None:
        self._metadata = metadata
        self._compute = compute
        self._framework = framework
        self._input_errors = input_errors
        self._outputs = {spec.name: spec for spec in metadata.outputs}
        self._all = tuple(self._outputs)
        self.model = model  # the framework's object, for tools such as `serval convert`

    @property
    def metadata(self) -> ServableMetadata:
        return self._metadata

    def predict(self, request: InferenceRequest) -> InferenceResponse:
        started = time.perf_counter_ns()
        rows = request.inputs[0].data
        names = self._all if request.outputs is None else [o.name for o in request.outputs]
        prepared = time.perf_counter_ns()
        try:
            results = self._compute(rows, names)
        except self._input_errors as exc:
            raise InvalidInputError(f"{self._framework} rejected the input: {exc}") from exc
        inferred = time.perf_counter_ns()
        outputs = [to_tensor(self._outputs[name], results[name]) for name in names]
        finished = time.perf_counter_ns()
        timings = InferenceTimings.of_stages(
            started, prepared, inferred, finished, int(rows.shape[0]) if rows.ndim else 1
        )
        return InferenceResponse(request.model_name, outputs, timings=timings)

    def warm_up(self, batch_size: int, iterations: int) -> None:
        spec = self._metadata.inputs[0]
        width = spec.shape[1] if len(spec.shape) > 1 and spec.shape[1] > 0 else 1
        rows = np.zeros((batch_size, width), dtype=spec.datatype.numpy_dtype)
        for _ in range(iterations):
            try:
                self._compute(rows, self._all)
            except Exception as exc:
                raise ModelLoadError(
                    f"warm-up with zero-filled rows failed ({type(exc).__name__}: {exc}); fix "
                    f"the model or set warmup.enabled: false in model.yaml"
                ) from exc

    def close(self) -> None:
        self.model = None


def warmed_up(predictor: TabularPredictor, spec: ModelSpec) -> TabularPredictor:
    if spec.warmup.enabled:
        predictor.warm_up(spec.warmup.batch_size, spec.warmup.iterations)
    return predictor


def feature_names_parameter(names: Sequence[str] | None) -> dict[str, str]:
    """``{"feature_names": "a,b,c"}`` when the model knows its feature names."""
    return {"feature_names": ",".join(str(n) for n in names)} if names else {}
