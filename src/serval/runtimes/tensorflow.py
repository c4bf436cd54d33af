"""TensorFlow: a SavedModel in TF Serving's layout (``<version>/saved_model.pb`` and
``variables/``) or Triton's (``<version>/model.savedmodel/``), or a Keras 3 file
``<version>/model.keras``.

Every signature def is a serval signature (``serving_default`` the default and first); a
request selects one with the parameter ``signature`` (TF Serving's ``signature_name``). Each
signature declares its own inputs and outputs, which the metadata carries
(``ServableMetadata.signature_specs``) so that requests are checked against the one they name.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import numpy as np
import tensorflow as tf
from pydantic import BaseModel, ConfigDict, Field

from serval.core.errors import InvalidInputError, ModelLoadError
from serval.core.lifecycle.loader import LoadRequest
from serval.core.tensors.datatypes import DataType
from serval.core.tensors.signatures import SIGNATURE_PARAMETER
from serval.core.types import (
    InferenceRequest,
    InferenceResponse,
    InferenceTimings,
    ServableMetadata,
    SignatureSpec,
    TensorSpec,
)
from serval.runtimes.encoding import to_tensor
from serval.runtimes.options import parse_runtime_options, spec_file
from serval.runtimes.tf_signatures import (
    DEFAULT_SIGNATURE,
    TfSignature,
    keras_signatures,
    saved_model_signatures,
    with_overrides,
)

logger = logging.getLogger(__name__)

SAVED_MODEL = "saved_model.pb"  # TF Serving: the version folder is the SavedModel
TRITON_SAVED_MODEL = "model.savedmodel"  # Triton: a SavedModel folder inside the version
KERAS = "model.keras"
PLATFORM_SAVED_MODEL = "tensorflow_savedmodel"  # Triton's platform name
PLATFORM_KERAS = "tensorflow_keras"

# TF raises these when the graph cannot take inputs that passed the declared metadata.
_INPUT_ERRORS = (tf.errors.InvalidArgumentError, ValueError, TypeError)


class TensorFlowOptions(BaseModel):
    """``runtime_options`` of a TensorFlow model in ``model.yaml``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    intra_op_threads: int = Field(
        default=0,
        ge=0,
        description="Threads one operator may use; 0 lets TensorFlow choose (one per core). "
        "Process-wide: the first TensorFlow model loaded sets it.",
    )
    inter_op_threads: int = Field(
        default=0,
        ge=0,
        description="Threads that run independent operators; 0 lets TensorFlow choose (one "
        "per core). Process-wide: the first TensorFlow model loaded sets it.",
    )


class TensorFlowLoader:
    """Builds a ``TensorFlowPredictor``; construction only validates options (cheap)."""

    def __init__(self, request: LoadRequest) -> None:
        self._request = request
        self._spec_file = spec_file(request)
        self._options = parse_runtime_options(TensorFlowOptions, request)

    def load(self) -> TensorFlowPredictor:
        _set_threads(self._options, self._spec_file)
        folder = self._request.path
        if (folder / SAVED_MODEL).is_file():
            model, found = saved_model_signatures(folder)
            platform = PLATFORM_SAVED_MODEL
        elif (folder / TRITON_SAVED_MODEL / SAVED_MODEL).is_file():
            model, found = saved_model_signatures(folder / TRITON_SAVED_MODEL)
            platform = PLATFORM_SAVED_MODEL
        elif (folder / KERAS).is_file():
            model, found = keras_signatures(folder / KERAS)
            platform = PLATFORM_KERAS
        else:
            raise ModelLoadError(
                f"no TensorFlow model in {folder} (expected {SAVED_MODEL}, "
                f"{TRITON_SAVED_MODEL}/{SAVED_MODEL} or {KERAS})"
            )
        spec = self._request.spec
        signatures = with_overrides(found, spec.inputs, spec.outputs, self._spec_file)
        predictor = TensorFlowPredictor(model, signatures, platform)
        if spec.warmup.enabled:
            predictor.warm_up(spec.warmup.batch_size, spec.warmup.iterations)
        return predictor


class TensorFlowPredictor:
    """Runs the signature a request names. Thread-safe: concrete functions may be called
    from several threads at once."""

    def __init__(self, model: Any, signatures: list[TfSignature], platform: str) -> None:
        self.model = model  # the framework's object, for tools such as `serval convert`
        self._signatures = {signature.name: signature for signature in signatures}
        has_default = signatures[0].name == DEFAULT_SIGNATURE
        first = signatures[0]
        self._default = first.name if has_default else None
        self._metadata = ServableMetadata(
            platform=platform,
            inputs=first.inputs,
            outputs=first.outputs,
            signatures=tuple(self._signatures),
            signature_specs=tuple(SignatureSpec(s.name, s.inputs, s.outputs) for s in signatures),
            requires_signature=not has_default,
        )
        self._outputs = {
            signature.name: {spec.name: spec for spec in signature.outputs}
            for signature in signatures
        }

    @property
    def metadata(self) -> ServableMetadata:
        return self._metadata

    @property
    def signatures(self) -> Mapping[str, TfSignature]:
        """The signatures by name (the default first), for tools such as `serval convert`."""
        return MappingProxyType(self._signatures)

    def predict(self, request: InferenceRequest) -> InferenceResponse:
        started = time.perf_counter_ns()
        signature = self._signature(request)
        feeds = _feeds(signature, {tensor.name: tensor.data for tensor in request.inputs})
        outputs = self._outputs[signature.name]
        names = list(outputs) if request.outputs is None else [o.name for o in request.outputs]
        prepared = time.perf_counter_ns()
        try:
            results = signature.call(feeds)
        except _INPUT_ERRORS as exc:
            raise InvalidInputError(
                f"TensorFlow cannot run signature {signature.name!r} on this input: "
                f"{_first_line(exc)}"
            ) from exc
        inferred = time.perf_counter_ns()
        tensors = [to_tensor(outputs[name], results[name].numpy()) for name in names]
        finished = time.perf_counter_ns()
        timings = InferenceTimings.of_stages(started, prepared, inferred, finished, request.rows)
        return InferenceResponse(request.model_name, tensors, timings=timings)

    def _signature(self, request: InferenceRequest) -> TfSignature:
        name = request.parameters.get(SIGNATURE_PARAMETER, self._default)
        signature = self._signatures.get(name) if isinstance(name, str) else None
        if signature is None:
            known = ", ".join(self._signatures)
            if name is None:
                raise InvalidInputError(
                    f"the SavedModel has no {DEFAULT_SIGNATURE!r} signature: name one of its "
                    f"signatures ({known}) with signature_name (or the parameter "
                    f"{SIGNATURE_PARAMETER!r})"
                )
            raise InvalidInputError(f"unknown signature {name!r}; the model has: {known}")
        return signature

    def warm_up(self, batch_size: int, iterations: int) -> None:
        for signature in self._signatures.values():
            zeros = {spec.name: _zeros(spec, batch_size) for spec in signature.inputs}
            feeds = _feeds(signature, zeros)
            for _ in range(iterations):
                try:
                    signature.call(feeds)
                except Exception as exc:
                    raise ModelLoadError(
                        f"warm-up of signature {signature.name!r} with zero-filled inputs "
                        f"failed ({_first_line(exc)}); fix the model or set "
                        f"warmup.enabled: false in model.yaml"
                    ) from exc

    def close(self) -> None:
        # TensorFlow frees the graph and variables when the last reference goes.
        self.model = None
        self._signatures = {}


def _set_threads(options: TensorFlowOptions, source: str) -> None:
    """Apply the thread counts; TensorFlow takes them only before its first operation, so a
    later model asking for others is told it gets the ones in force."""
    threading = tf.config.threading
    for name, wanted, setter, getter in (
        (
            "intra_op_threads",
            options.intra_op_threads,
            threading.set_intra_op_parallelism_threads,
            threading.get_intra_op_parallelism_threads,
        ),
        (
            "inter_op_threads",
            options.inter_op_threads,
            threading.set_inter_op_parallelism_threads,
            threading.get_inter_op_parallelism_threads,
        ),
    ):
        if getter() == wanted:
            continue
        try:
            setter(wanted)
        except RuntimeError:
            logger.warning(
                "%s: runtime_options.%s: %d not applied: TensorFlow's thread pools are "
                "process-wide and already started with %d",
                source,
                name,
                wanted,
                getter(),
            )


def _feeds(
    signature: TfSignature, arrays: dict[str, np.ndarray[Any, Any]]
) -> dict[str, np.ndarray[Any, Any]]:
    """The arrays in the graph's dtypes, where model.yaml declares other datatypes."""
    if not signature.casts:
        return arrays
    return {
        name: array if (cast := signature.casts.get(name)) is None else array.astype(cast)
        for name, array in arrays.items()
    }


def _zeros(spec: TensorSpec, batch_size: int) -> np.ndarray[Any, Any]:
    shape = tuple(
        (batch_size if index == 0 else 1) if dim == -1 else dim
        for index, dim in enumerate(spec.shape)
    )
    if spec.datatype is DataType.BYTES:
        return np.full(shape, b"", dtype=np.object_)
    return np.zeros(shape, dtype=spec.datatype.numpy_dtype)


def _first_line(exc: BaseException) -> str:
    """The reason in a TensorFlow error: its message without the graph trace TF adds (where
    the node was defined, file paths of the server), which tells a client nothing."""
    for line in str(exc).splitlines():
        text = line.strip()
        if text and not text.startswith(_TRACE_LINES):
            return re.sub(r"\s*\[\[.*$|\s*\[Op:[^\]]*\]$", "", text) or type(exc).__name__
    return type(exc).__name__


_TRACE_LINES = ("Graph execution error", "Detected at node", "File ", "<stack traces", "[[")
