"""Runtime ``mlflow``: the model served through MLflow's ``python_function`` flavor.

Metadata comes from the ``MLmodel`` signature (``schema``); ``model.yaml`` ``inputs`` /
``outputs`` may correct it. The signature's params are taken from the request's parameters of
the same names and passed to ``predict(params=...)``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException

from serval.core.errors import (
    InvalidInputError,
    ModelConfigError,
    ModelExecutionError,
    ModelLoadError,
)
from serval.core.lifecycle.loader import LoadRequest
from serval.core.tensors.datatypes import DataType
from serval.core.types import (
    InferenceRequest,
    InferenceResponse,
    InferenceTimings,
    ServableMetadata,
    Tensor,
    TensorSpec,
)
from serval.runtimes.encoding import decode_strings, to_tensor
from serval.runtimes.mlflow.dependencies import missing_dependency, missing_module
from serval.runtimes.mlflow.mlmodel import PYFUNC, MLmodel, read_mlmodel
from serval.runtimes.mlflow.options import MlflowOptions
from serval.runtimes.mlflow.safety import check_pickles, check_skops_types
from serval.runtimes.mlflow.schema import INPUT, PREDICT, Field, Kind, Schema, parse_schema
from serval.runtimes.options import apply_overrides, parse_runtime_options, spec_file

logger = logging.getLogger(__name__)

PLATFORM = "mlflow_pyfunc"
# Without an output schema: one output whose datatype model.yaml may correct.
_UNDECLARED_OUTPUT = Schema(
    Kind.TENSORS, (Field(TensorSpec(PREDICT, DataType.FP64, (-1,)), "<f8", False),)
)


class MlflowLoader:
    def __init__(self, request: LoadRequest) -> None:
        self._request = request
        self._spec_file = spec_file(request)
        self._options = parse_runtime_options(MlflowOptions, request)

    def load(self) -> MlflowPredictor:
        mlmodel = read_mlmodel(self._request.path)
        if mlmodel.flavor(PYFUNC) is None:
            raise ModelLoadError(
                f"{mlmodel.path} has no {PYFUNC} flavor (it has: {', '.join(mlmodel.flavors)}); "
                f"serval serves MLflow models through it"
            )
        check_skops_types(mlmodel, self._options.trusted_types, self._spec_file)
        if check_pickles(mlmodel, self._options.trust_pickle, self._spec_file):
            logger.warning(
                "model %s version %d: loading an MLflow model that holds pickles because %s sets "
                "runtime_options.trust_pickle: true; a pickle can run arbitrary code",
                self._request.name,
                self._request.version,
                self._spec_file,
            )
        inputs, outputs = self._schemas(mlmodel)
        try:
            model = mlflow.pyfunc.load_model(str(mlmodel.folder))
        except (ImportError, MlflowException) as exc:
            module = missing_module(exc)
            if module is not None:
                raise missing_dependency(module, mlmodel.folder) from exc
            raise ModelLoadError(f"MLflow cannot load {mlmodel.folder}: {exc}") from exc
        metadata = ServableMetadata(
            platform=PLATFORM,
            inputs=apply_overrides(
                inputs.specs, self._request.spec.inputs, "inputs", self._spec_file
            ),
            outputs=apply_overrides(
                outputs.specs, self._request.spec.outputs, "outputs", self._spec_file
            ),
            parameters=_parameters(mlmodel),
        )
        params = {str(p["name"]) for p in mlmodel.params or () if "name" in p}
        predictor = MlflowPredictor(model, metadata, inputs, outputs, frozenset(params))
        warmup = self._request.spec.warmup
        if warmup.enabled:
            predictor.warm_up(warmup.batch_size, warmup.iterations)
        return predictor

    def _schemas(self, mlmodel: MLmodel) -> tuple[Schema, Schema]:
        if mlmodel.inputs is None:
            raise ModelConfigError(
                f"{mlmodel.path} has no signature: serval takes the model's inputs from it. Log "
                f"the model with one (signature=mlflow.models.infer_signature(example, "
                f"prediction), or an input_example)"
            )
        where = f"{mlmodel.path}: signature"
        inputs = parse_schema(mlmodel.inputs, INPUT, f"{where} inputs")
        if mlmodel.outputs is None:
            return inputs, _UNDECLARED_OUTPUT
        return inputs, parse_schema(mlmodel.outputs, PREDICT, f"{where} outputs")


def _parameters(mlmodel: MLmodel) -> dict[str, str]:
    """The flavors, and the signature's params (as MLflow writes them) when it has some."""
    parameters = {"flavors": ",".join(mlmodel.flavors)}
    if mlmodel.params:
        parameters["params"] = json.dumps(mlmodel.params, separators=(",", ":"))
    return parameters


class MlflowPredictor:
    """Calls the pyfunc model's ``predict`` from serval's inference threads."""

    def __init__(
        self,
        model: Any,
        metadata: ServableMetadata,
        inputs: Schema,
        outputs: Schema,
        params: frozenset[str],
    ) -> None:
        self._model = model
        self._metadata = metadata
        self._inputs = inputs
        self._outputs = outputs
        self._params = params
        self._output_specs = {spec.name: spec for spec in metadata.outputs}
        self._all = tuple(self._output_specs)

    @property
    def metadata(self) -> ServableMetadata:
        return self._metadata

    def predict(self, request: InferenceRequest) -> InferenceResponse:
        started = time.perf_counter_ns()
        given = {tensor.name: tensor for tensor in request.inputs}
        model_input = self._model_input(given)
        params = {k: v for k, v in request.parameters.items() if k in self._params}
        names = self._all if request.outputs is None else [o.name for o in request.outputs]
        prepared = time.perf_counter_ns()
        try:
            result = self._model.predict(model_input, params=params or None)
        except MlflowException as exc:
            # MLflow's schema enforcement: the input does not fit the signature.
            raise InvalidInputError(f"MLflow rejected the input: {exc.message}") from exc
        inferred = time.perf_counter_ns()
        values = self._split(result)
        try:
            outputs = [to_tensor(self._output_specs[name], values[name]) for name in names]
        except (ValueError, TypeError) as exc:
            raise ModelExecutionError(
                f"the model's output does not fit its signature ({exc}); correct the outputs "
                f"in model.yaml"
            ) from exc
        finished = time.perf_counter_ns()
        timings = InferenceTimings.of_stages(started, prepared, inferred, finished, request.rows)
        return InferenceResponse(request.model_name, outputs, timings=timings)

    def _model_input(self, given: Mapping[str, Tensor]) -> Any:
        """What the pyfunc model takes: a DataFrame for columns, arrays for tensors."""
        values = {
            field.spec.name: _value(given[field.spec.name], field) for field in self._inputs.fields
        }
        if self._inputs.kind is Kind.COLUMNS:
            frame = pd.DataFrame(values)
            if not self._inputs.named:  # unnamed columns are matched by position
                frame.columns = pd.RangeIndex(len(values))
            return frame
        if len(values) == 1 and not self._inputs.named:
            return next(iter(values.values()))
        return values

    def _split(self, result: Any) -> dict[str, Any]:
        """The model's result as ``{output name: values}``."""
        names = [field.spec.name for field in self._outputs.fields]
        if isinstance(result, pd.DataFrame):
            if all(name in result.columns for name in names):
                return {name: result[name].to_numpy() for name in names}
            if len(names) == 1:
                array = result.to_numpy()
                return {names[0]: array.reshape(-1) if array.shape[1] == 1 else array}
        elif isinstance(result, Mapping):
            return {str(k): np.asarray(v) for k, v in result.items()}
        elif len(names) == 1:
            return {names[0]: np.asarray(result)}
        raise ModelExecutionError(
            f"the model returned a {type(result).__name__} that serval cannot split into its "
            f"outputs ({', '.join(names)})"
        )

    def warm_up(self, batch_size: int, iterations: int) -> None:
        request = InferenceRequest(
            "warm-up", [_zeros(spec, batch_size) for spec in self._metadata.inputs]
        )
        for _ in range(iterations):
            try:
                self.predict(request)
            except Exception as exc:
                raise ModelLoadError(
                    f"warm-up with zero-filled inputs failed ({type(exc).__name__}: {exc}); fix "
                    f"the model or set warmup.enabled: false in model.yaml"
                ) from exc

    def close(self) -> None:
        self._model = None


def _value(tensor: Tensor, field: Field) -> Any:
    """A tensor as the model's column or array: text decoded unless it is binary."""
    if tensor.datatype is not DataType.BYTES or field.mlflow_type in ("binary", "|S0"):
        return tensor.data
    return decode_strings(tensor)


def _zeros(spec: TensorSpec, batch_size: int) -> Tensor:
    shape = tuple(
        (batch_size if index == 0 else 1) if dim == -1 else dim
        for index, dim in enumerate(spec.shape)
    )
    if spec.datatype is DataType.BYTES:
        return Tensor(spec.name, spec.datatype, np.full(shape, b"", dtype=np.object_))
    return Tensor(spec.name, spec.datatype, np.zeros(shape, dtype=spec.datatype.numpy_dtype))
