"""The request parameters the Open Inference Protocol (and Triton's extensions) define for the
transport and the queue, never for the model.

An adapter takes them off a request while it decodes it, so that the core sees only the
parameters meant for the model (a model's batches group requests by those): Triton's
``schedule_policy`` parameters ``timeout`` (microseconds) and ``priority`` become
``InferenceRequest.deadline`` and ``InferenceRequest.priority``; the binary tensor data
extension's ``binary_data_output`` (request) and ``binary_data`` (requested output) tell the
REST adapter how to encode the response. ``binary_data_size`` announces an input's raw bytes
and stays on the input tensor, which no batch compares. ``cache: false`` becomes
``InferenceRequest.cache`` (skip the prediction cache), so that it splits no batch either.
Triton's classification extension's ``classification`` (a requested output's class count,
``class_count`` in tritonclient; also accepted under that name) is taken off for
the adapter, which turns that output into top-k strings (``protocols.oip.classification``).

Triton's parameters for features serval does not have are refused with a 400 that says so,
rather than ignored (a sequence's state would silently be lost) or misreported (a
shared-memory input reads as "no data"): ``sequence_id``, ``sequence_start`` and
``sequence_end`` (sequence batching) on a request, and ``shared_memory_region``,
``shared_memory_byte_size`` and ``shared_memory_offset`` (the shared-memory extensions) on
an input or a requested output.

MLServer's ``content_type`` markers become ``InferenceRequest.content_type``
(``core.tensors.content_types``).
"""

from __future__ import annotations

import time
from collections.abc import Container

from serval.core.errors import InvalidInputError
from serval.core.tensors.content_types import take_content_type
from serval.core.types import InferenceRequest, ParameterValue, RequestedOutput

TIMEOUT = "timeout"  # microseconds; 0 or absent: no deadline
PRIORITY = "priority"  # 1 is the highest; 0 or absent: the model's default
BINARY_DATA_OUTPUT = "binary_data_output"  # every output as binary data (REST)
BINARY_DATA = "binary_data"  # on a requested output: that output as binary data (REST)
BINARY_DATA_SIZE = "binary_data_size"  # on a tensor: the bytes of its binary data (REST)
HEADERS = "headers"  # Triton's clients forward HTTP headers in it; meaningless to a model
CACHE = "cache"  # false: skip the model's prediction cache (docs/caching.md)
# On a requested output: its top-k classes. Triton's classification extension names the
# parameter "classification" (tritonclient's `class_count=` sends it); "class_count" is accepted.
CLASSIFICATION = "classification"
CLASS_COUNT = "class_count"

# Triton's parameters for what serval does not do (see the module docstring).
SEQUENCE_PARAMETERS = ("sequence_id", "sequence_start", "sequence_end")
SHARED_MEMORY_PARAMETERS = (
    "shared_memory_region",
    "shared_memory_byte_size",
    "shared_memory_offset",
)


def take_request_parameters(
    request: InferenceRequest, parameters: dict[str, ParameterValue], *, now: float | None = None
) -> bool:
    """Take the transport and schedule parameters off ``parameters`` (the request's own dict,
    decoded by the adapter and not yet shared): set ``request.deadline`` (the earlier one wins)
    and ``request.priority``; return ``binary_data_output``. ``now`` is ``time.monotonic()``
    when the request arrived."""
    take_content_type(request, parameters)
    if not parameters:
        return False
    refuse_sequence(parameters)
    timeout_us = _non_negative_int(parameters.pop(TIMEOUT, None), TIMEOUT, "microseconds")
    if timeout_us:
        request.tighten_deadline((time.monotonic() if now is None else now) + timeout_us / 1e6)
    priority = _non_negative_int(
        parameters.pop(PRIORITY, None), PRIORITY, "level; 1 is the highest"
    )
    if priority is not None:
        request.priority = priority
    parameters.pop(HEADERS, None)
    cache = parameters.pop(CACHE, None)
    if cache is not None:
        if not isinstance(cache, bool):
            raise InvalidInputError(f"parameter {CACHE!r}: expected true or false, got {cache!r}")
        request.cache = cache
    return bool(parameters.pop(BINARY_DATA_OUTPUT, False))


def take_binary_data(parameters: dict[str, ParameterValue]) -> bool | None:
    """Take ``binary_data`` off a requested output's ``parameters``: None when absent."""
    if not parameters:
        return None
    binary = parameters.pop(BINARY_DATA, None)
    return None if binary is None else bool(binary)


def take_class_counts(request: InferenceRequest) -> dict[str, int] | None:
    """Take ``classification`` (or ``class_count``) off the requested outputs: output name ->
    k, for each output that asks for its top-k classes (0 asks for none, as in Triton); None
    when none does."""
    counts: dict[str, int] | None = None
    outputs = request.outputs or []
    for index, output in enumerate(outputs):
        given = output.parameters
        if not given or (CLASSIFICATION not in given and CLASS_COUNT not in given):
            continue
        params = dict(given)
        for key in (CLASSIFICATION, CLASS_COUNT):
            value = params.pop(key, None)
            count = _non_negative_int(value, key, f"classes of output {output.name!r}")
            if count:
                if counts is None:
                    counts = {}
                counts[output.name] = count
        outputs[index] = RequestedOutput(output.name, params)  # the model sees the rest
    return counts


def refuse_sequence(parameters: Container[str]) -> None:
    """A 400 if a request's ``parameters`` ask for Triton's sequence batching."""
    for key in SEQUENCE_PARAMETERS:
        if key in parameters:
            raise InvalidInputError(
                f"parameter {key!r}: serval does not support sequence batching (Triton's "
                f"sequence_id, sequence_start, sequence_end); send requests without them, each "
                f"complete in itself"
            )


def refuse_shared_memory(parameters: Container[str], where: str) -> None:
    """A 400 if a tensor's ``parameters`` place its data in a shared-memory region."""
    for key in SHARED_MEMORY_PARAMETERS:
        if key in parameters:
            raise InvalidInputError(
                f"{where}: parameter {key!r}: serval does not support Triton's shared-memory "
                f"extensions (system or CUDA); send the tensor's data in the request"
            )


def _non_negative_int(value: ParameterValue | None, key: str, unit: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidInputError(
            f"parameter {key!r} must be a non-negative integer ({unit}), received {value!r}"
        )
    return value
