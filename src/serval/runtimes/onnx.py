"""ONNX Runtime: ``model.onnx`` served by an ``onnxruntime.InferenceSession``."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnxruntime as ort
from onnxruntime.capi import onnxruntime_pybind11_state as ort_errors
from pydantic import BaseModel, ConfigDict, Field

from serval.core.errors import InvalidInputError, ModelConfigError, ModelLoadError
from serval.core.lifecycle.loader import LoadRequest
from serval.core.specs.tensors import TensorOverride
from serval.core.tensors.datatypes import DataType
from serval.core.types import (
    InferenceRequest,
    InferenceResponse,
    InferenceTimings,
    ServableMetadata,
    Tensor,
    TensorSpec,
)
from serval.runtimes.options import apply_overrides, parse_runtime_options, spec_file

logger = logging.getLogger(__name__)

PLATFORM = "onnxruntime_onnx"  # Triton's platform name for ONNX models

_ORT_TYPES: dict[str, DataType] = {
    "tensor(bool)": DataType.BOOL,
    "tensor(uint8)": DataType.UINT8,
    "tensor(uint16)": DataType.UINT16,
    "tensor(uint32)": DataType.UINT32,
    "tensor(uint64)": DataType.UINT64,
    "tensor(int8)": DataType.INT8,
    "tensor(int16)": DataType.INT16,
    "tensor(int32)": DataType.INT32,
    "tensor(int64)": DataType.INT64,
    "tensor(float16)": DataType.FP16,
    "tensor(float)": DataType.FP32,
    "tensor(double)": DataType.FP64,
    "tensor(string)": DataType.BYTES,
}

_OPTIMIZATION_LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


class OnnxOptions(BaseModel):
    """``runtime_options`` of an ONNX model in ``model.yaml``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    intra_op_threads: int = Field(default=0, ge=0, description="0 lets onnxruntime choose.")
    inter_op_threads: int = Field(default=0, ge=0, description="0 lets onnxruntime choose.")
    graph_optimization_level: Literal["disable", "basic", "extended", "all"] = "all"
    execution_mode: Literal["sequential", "parallel"] = "sequential"
    execution_providers: tuple[str, ...] = Field(
        default=("CPUExecutionProvider",),
        description="In order of preference, e.g. [CUDAExecutionProvider, CPUExecutionProvider].",
    )


class OnnxLoader:
    """Builds an ``OnnxPredictor``; construction only validates options (cheap)."""

    def __init__(self, request: LoadRequest, *, artifact: Path | None = None) -> None:
        """``artifact``: the file to load, where a wrapper knows it (an MLflow model's)."""
        self._request = request
        self._artifact = artifact
        self._spec_file = spec_file(request)
        self._options = parse_runtime_options(OnnxOptions, request)
        available = ort.get_available_providers()
        missing = [p for p in self._options.execution_providers if p not in available]
        if missing:
            raise ModelConfigError(
                f"{self._spec_file}: runtime_options.execution_providers: {', '.join(missing)} not "
                f"available in this onnxruntime build (available: {', '.join(available)})"
            )

    def load(self) -> OnnxPredictor:
        path = self._artifact or self._request.path / "model.onnx"
        if not path.is_file():
            raise ModelLoadError(f"{path} does not exist")
        options = ort.SessionOptions()
        options.intra_op_num_threads = self._options.intra_op_threads
        options.inter_op_num_threads = self._options.inter_op_threads
        options.graph_optimization_level = _OPTIMIZATION_LEVELS[
            self._options.graph_optimization_level
        ]
        options.execution_mode = (
            ort.ExecutionMode.ORT_PARALLEL
            if self._options.execution_mode == "parallel"
            else ort.ExecutionMode.ORT_SEQUENTIAL
        )
        session = ort.InferenceSession(
            str(path), sess_options=options, providers=list(self._options.execution_providers)
        )
        spec = self._request.spec
        metadata = ServableMetadata(
            platform=PLATFORM,
            inputs=_tensor_specs(session.get_inputs(), spec.inputs, "inputs", self._spec_file),
            outputs=_tensor_specs(session.get_outputs(), spec.outputs, "outputs", self._spec_file),
        )
        predictor = OnnxPredictor(session, metadata)
        if spec.warmup.enabled:
            predictor.warm_up(spec.warmup.batch_size, spec.warmup.iterations)
        return predictor


class OnnxPredictor:
    """Thread-safe: onnxruntime sessions allow concurrent ``run`` calls."""

    def __init__(self, session: ort.InferenceSession, metadata: ServableMetadata) -> None:
        self._session = session
        self._metadata = metadata
        self._output_names = [spec.name for spec in metadata.outputs]
        self._outputs = {spec.name: spec for spec in metadata.outputs}
        self._string_inputs = {s.name for s in metadata.inputs if s.datatype is DataType.BYTES}

    @property
    def metadata(self) -> ServableMetadata:
        return self._metadata

    def predict(self, request: InferenceRequest) -> InferenceResponse:
        started = time.perf_counter_ns()
        feeds = {
            tensor.name: _to_ort_strings(tensor)
            if tensor.name in self._string_inputs
            else tensor.data
            for tensor in request.inputs
        }
        names = (
            self._output_names
            if request.outputs is None
            else [output.name for output in request.outputs]
        )
        prepared = time.perf_counter_ns()
        try:
            results = self._session.run(names, feeds)
        except (ort_errors.InvalidArgument, ort_errors.Fail) as exc:
            # Inputs pass the declared metadata but the graph cannot take them (a size that
            # only the -1 dimensions allowed): the request must change, not the server.
            raise InvalidInputError(
                f"onnxruntime cannot run the model on this input: {exc}"
            ) from exc
        inferred = time.perf_counter_ns()
        outputs = []
        for name, result in zip(names, results, strict=True):
            datatype = self._outputs[name].datatype
            array = _from_ort_strings(result) if datatype is DataType.BYTES else result
            outputs.append(Tensor(name, datatype, array))
        finished = time.perf_counter_ns()
        timings = InferenceTimings.of_stages(started, prepared, inferred, finished, request.rows)
        return InferenceResponse(request.model_name, outputs, timings=timings)

    def warm_up(self, batch_size: int, iterations: int) -> None:
        feeds = {spec.name: _zeros(spec, batch_size) for spec in self._metadata.inputs}
        for _ in range(iterations):
            try:
                self._session.run(self._output_names, feeds)
            except Exception as exc:
                raise ModelLoadError(
                    f"warm-up with zero-filled inputs failed ({exc}); fix the model or set "
                    f"warmup.enabled: false in model.yaml"
                ) from exc

    def close(self) -> None:
        # onnxruntime frees the session when the last reference goes.
        del self._session


def _tensor_specs(
    nodes: list[Any], overrides: tuple[TensorOverride, ...], field: str, source: str
) -> tuple[TensorSpec, ...]:
    specs = []
    for node in nodes:
        datatype = _ORT_TYPES.get(node.type)
        if datatype is None:
            raise ModelLoadError(f"{field[:-1]} {node.name!r} has unsupported type {node.type}")
        shape = tuple(dim if isinstance(dim, int) and dim >= 0 else -1 for dim in node.shape)
        specs.append(TensorSpec(node.name, datatype, shape))
    return apply_overrides(specs, overrides, field, source)


def _to_ort_strings(tensor: Tensor) -> np.ndarray[Any, Any]:
    # onnxruntime string tensors hold UTF-8 text and take Python str objects.
    try:
        decoded = [
            item.decode("utf-8") if isinstance(item, bytes) else str(item)
            for item in tensor.data.reshape(-1)
        ]
    except UnicodeDecodeError as exc:
        raise InvalidInputError(
            f"input {tensor.name!r}: an element is not valid UTF-8 ({exc.reason}); ONNX string "
            f"tensors hold text"
        ) from exc
    return np.array(decoded, dtype=np.object_).reshape(tensor.data.shape)


def _from_ort_strings(array: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    encoded = np.empty(array.shape, dtype=np.object_)
    flat = encoded.reshape(-1)
    for index, item in enumerate(array.reshape(-1)):
        flat[index] = item.encode("utf-8") if isinstance(item, str) else bytes(item)
    return encoded


def _zeros(spec: TensorSpec, batch_size: int) -> np.ndarray[Any, Any]:
    shape = tuple(
        (batch_size if index == 0 else 1) if dim == -1 else dim
        for index, dim in enumerate(spec.shape)
    )
    if spec.datatype is DataType.BYTES:
        return np.full(shape, "", dtype=np.object_)
    return np.zeros(shape, dtype=spec.datatype.numpy_dtype)
