"""Runs a torch module on serval's threads under ``torch.inference_mode()``."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils import _pytree as pytree

from serval.core.errors import InvalidInputError, ModelLoadError
from serval.core.types import (
    InferenceRequest,
    InferenceResponse,
    InferenceTimings,
    ServableMetadata,
    Tensor,
    TensorSpec,
)
from serval.runtimes.encoding import to_tensor
from serval.runtimes.pytorch.dtypes import TO_TORCH

# (positional tensors in the order of the metadata's inputs) -> what forward returns
Forward = Callable[[Sequence[torch.Tensor]], Any]

# What torch raises when a model cannot take an input that passed the declared metadata (a
# size only a -1 dimension allowed): a TorchScript or eager operator (RuntimeError, e.g.
# "mat1 and mat2 shapes cannot be multiplied"), an exported program's guard (AssertionError),
# or its input tree (ValueError).
_INPUT_ERRORS = (RuntimeError, AssertionError, ValueError)


class TorchPredictor:
    """Thread-safe: under ``inference_mode`` a module's forward changes no state."""

    def __init__(
        self,
        forward: Forward,
        metadata: ServableMetadata,
        model: Any,
        on_close: Callable[[], None],
    ) -> None:
        self._forward = forward
        self._metadata = metadata
        self._input_names = [spec.name for spec in metadata.inputs]
        self._outputs = {spec.name: spec for spec in metadata.outputs}
        self._all = tuple(self._outputs)
        self._on_close = on_close
        self.model = model  # the framework's object, for tools such as `serval convert`

    @property
    def metadata(self) -> ServableMetadata:
        return self._metadata

    def predict(self, request: InferenceRequest) -> InferenceResponse:
        started = time.perf_counter_ns()
        given = {tensor.name: tensor.data for tensor in request.inputs}
        missing = [name for name in self._input_names if name not in given]
        if missing:
            raise InvalidInputError(f"missing inputs: {', '.join(missing)}")
        arguments = [_to_torch(given[name]) for name in self._input_names]
        names = self._all if request.outputs is None else [o.name for o in request.outputs]
        prepared = time.perf_counter_ns()
        try:
            with torch.inference_mode():
                results = named_results(self._forward(arguments), self._all)
        except _INPUT_ERRORS as exc:
            raise InvalidInputError(
                f"torch cannot run the model on this input: {_reason(exc)}"
            ) from exc
        inferred = time.perf_counter_ns()
        outputs = [_to_tensor(self._outputs[name], results[name]) for name in names]
        finished = time.perf_counter_ns()
        timings = InferenceTimings.of_stages(started, prepared, inferred, finished, request.rows)
        return InferenceResponse(request.model_name, outputs, timings=timings)

    def warm_up(self, batch_size: int, iterations: int) -> None:
        arguments = [_zeros(spec, batch_size) for spec in self._metadata.inputs]
        for _ in range(iterations):
            try:
                with torch.inference_mode():
                    results = named_results(self._forward(arguments), self._all)
                for name, spec in self._outputs.items():
                    _to_tensor(spec, results[name])
            except Exception as exc:
                raise ModelLoadError(
                    f"warm-up with zero-filled inputs failed ({type(exc).__name__}: "
                    f"{_reason(exc)}); fix the model or model.yaml's inputs and outputs, or set "
                    f"warmup.enabled: false in model.yaml"
                ) from exc

    def close(self) -> None:
        self._on_close()
        self.model = None


def named_results(result: Any, names: Sequence[str]) -> Mapping[str, Any]:
    """``forward``'s result by output name: a dict's own keys, else its tensors in order."""
    if isinstance(result, Mapping):
        absent = [name for name in names if name not in result]
        if absent:
            raise ValueError(
                f"forward returned a dict without {', '.join(absent)} "
                f"(it has: {', '.join(map(str, result))})"
            )
        return result
    leaves = pytree.tree_leaves(result)
    if len(leaves) != len(names):
        raise ValueError(
            f"forward returned {len(leaves)} tensors for {len(names)} outputs ({', '.join(names)})"
        )
    return dict(zip(names, leaves, strict=True))


def _to_torch(array: np.ndarray[Any, Any]) -> torch.Tensor:
    # torch.from_numpy shares memory; a read-only buffer (a binary request body) is copied, as
    # torch tensors are always writable and a model writing into its input must not corrupt it.
    return torch.from_numpy(array if array.flags.writeable else array.copy())


def _to_tensor(spec: TensorSpec, value: Any) -> Tensor:
    tensor = value if isinstance(value, torch.Tensor) else torch.as_tensor(value)
    wanted = TO_TORCH[spec.datatype]
    if tensor.dtype != wanted:  # a TorchScript model's declared datatype; bfloat16 has no numpy
        tensor = tensor.to(wanted)
    return to_tensor(spec, tensor.detach().cpu().numpy())


def _zeros(spec: TensorSpec, batch_size: int) -> torch.Tensor:
    shape = [
        (batch_size if index == 0 else 1) if dim == -1 else dim
        for index, dim in enumerate(spec.shape)
    ]
    return torch.zeros(shape, dtype=TO_TORCH[spec.datatype])


def _reason(exc: BaseException) -> str:
    # A TorchScript error carries the serialized code's traceback; its last line says what.
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return lines[-1].strip() if lines else type(exc).__name__
