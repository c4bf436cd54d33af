"""Transport-neutral request, response and tensor types.

Adapters decode their wire format into these and encode them back; the core never sees JSON,
HTTP or protobuf.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from serval.core.tensors.datatypes import DataType
from serval.core.timings import InferenceTimings

if TYPE_CHECKING:  # records.py imports this module
    from serval.core.records import RequestRecord

__all__ = [
    "InferenceRequest",
    "InferenceResponse",
    "InferenceTimings",
    "ModelMetadata",
    "ParameterValue",
    "Parameters",
    "RequestedOutput",
    "ServableMetadata",
    "SignatureSpec",
    "Tensor",
    "TensorSpec",
]

# Parameter values are scalars, as in the Open Inference Protocol.
ParameterValue = str | int | float | bool
Parameters = Mapping[str, ParameterValue]


@dataclass(frozen=True, slots=True, order=True)
class ServableId:
    """A model version: the model's name and the version's number."""

    name: str
    version: int

    def __str__(self) -> str:
        return f"{self.name}:{self.version}"


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """What a model declares about one input or output; -1 marks a variable dimension."""

    name: str
    datatype: DataType
    shape: tuple[int, ...]
    # The column names of a [-1, n] input, in order (``inputs[].columns`` in model.yaml): a
    # request of MLServer's PandasCodec, one input per column, is mapped onto it by them.
    columns: tuple[str, ...] = ()

    def accepts_shape(self, shape: Sequence[int]) -> bool:
        if len(shape) != len(self.shape):
            return False
        return all(want in (-1, got) for want, got in zip(self.shape, shape, strict=True))


@dataclass(frozen=True, slots=True)
class Tensor:
    """A named n-dimensional array. ``data`` has ``shape``; BYTES data is an object array of
    ``bytes``."""

    name: str
    datatype: DataType
    data: np.ndarray[Any, Any]
    parameters: Parameters = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)

    @classmethod
    def from_numpy(cls, name: str, data: np.ndarray[Any, Any]) -> Tensor:
        datatype = DataType.from_numpy(data.dtype)
        if datatype is DataType.BYTES and data.dtype.kind != "O":
            data = _to_bytes_array(data)
        return cls(name=name, datatype=datatype, data=data)


def _to_bytes_array(data: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    out = np.empty(data.shape, dtype=np.object_)
    for index, item in np.ndenumerate(data):
        out[index] = item.encode() if isinstance(item, str) else bytes(item)
    return out


@dataclass(frozen=True, slots=True)
class RequestedOutput:
    """An output the client asked for; ``parameters`` are for the model (adapters take their
    protocol's own hints off them when they decode the request)."""

    name: str
    parameters: Parameters = field(default_factory=dict)


@dataclass(slots=True)
class InferenceRequest:
    model_name: str
    inputs: list[Tensor]
    model_version: str | None = None
    id: str | None = None
    parameters: Parameters = field(default_factory=dict)
    # None means every output of the model.
    outputs: list[RequestedOutput] | None = None
    # The request's record (core.records), begun by the adapter that received it and filled in
    # by the data plane; None for an in-process caller (the data plane begins one).
    record: RequestRecord | None = None
    # When the answer stops being useful: time.monotonic() seconds; None means no deadline.
    # A request past its deadline is answered DeadlineExceededError and never run.
    deadline: float | None = None
    # Scheduling priority: 1 is the highest, larger numbers are lower, 0 means the model's
    # default (Triton's schedule_policy extension). Only a model with a queue reorders.
    priority: int = 0
    # Set by adapters that can tell: an awaitable that completes when the client has gone
    # (REST: the connection closed). A request that must wait for the model watches it and is
    # dropped, never run, if its client leaves first. None: cancellation tells (gRPC).
    client_gone: Callable[[], Awaitable[object]] | None = None
    # The sticky key of a traffic policy that keeps a user on one version (the header its
    # ``sticky`` names), set by adapters only for a model whose policy asks for one.
    routing_key: str | None = None
    # False when the client asked to skip the model's prediction cache (parameter ``cache``:
    # false): the answer is computed, and not stored either.
    cache: bool = True
    # MLServer's codec markers (core.tensors.content_types): the request's own
    # ``content_type`` ("pd", "np" or "str"), "" when only its inputs carry one; None for a
    # request without markers, which is validated strictly.
    content_type: str | None = None

    @property
    def rows(self) -> int:
        """The batch elements the request carries: its first input's first dimension (1 for a
        scalar input). A batching servable checks that every input agrees."""
        inputs = self.inputs
        if not inputs or not inputs[0].data.ndim:
            return 1
        return int(inputs[0].data.shape[0])

    def with_tensors(
        self, inputs: list[Tensor], outputs: list[RequestedOutput] | None
    ) -> InferenceRequest:
        """This request with other inputs and requested outputs, sharing everything else (its
        record and deadline included): what a layer hands the servable it wraps (the keys
        layer). Ten times cheaper than ``dataclasses.replace``; lists every field, so a new
        field must be added here too (a test checks)."""
        return InferenceRequest(
            model_name=self.model_name,
            inputs=inputs,
            model_version=self.model_version,
            id=self.id,
            parameters=self.parameters,
            outputs=outputs,
            record=self.record,
            deadline=self.deadline,
            priority=self.priority,
            client_gone=self.client_gone,
            routing_key=self.routing_key,
            cache=self.cache,
            content_type=self.content_type,
        )

    def tighten_deadline(self, deadline: float) -> None:
        """Keep the earlier of the request's deadline and ``deadline``."""
        if self.deadline is None or deadline < self.deadline:
            self.deadline = deadline


@dataclass(slots=True)
class InferenceResponse:
    model_name: str
    outputs: list[Tensor]
    model_version: str | None = None
    id: str | None = None
    parameters: Parameters = field(default_factory=dict)
    timings: InferenceTimings = field(default_factory=InferenceTimings)


@dataclass(frozen=True, slots=True)
class SignatureSpec:
    """One signature's own inputs and outputs, for runtimes whose signatures differ in them
    (a TensorFlow SavedModel's signature defs)."""

    name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]


@dataclass(frozen=True, slots=True)
class ServableMetadata:
    """What one loaded version declares; the data plane adds the model's name and versions."""

    platform: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    # Named entry points a request selects with its ``signature`` parameter, the default
    # first; empty for runtimes without signatures.
    signatures: tuple[str, ...] = ()
    # Facts about the model for clients, e.g. ``feature_names`` (comma-separated).
    parameters: Parameters = field(default_factory=dict)
    # Each signature's own inputs and outputs, in the order of ``signatures``, where they
    # differ between signatures; empty where every signature takes ``inputs`` (a Python
    # model's). ``inputs``/``outputs`` are then the default signature's.
    signature_specs: tuple[SignatureSpec, ...] = ()
    # True when the model has no default signature: every request must name one.
    requires_signature: bool = False
    # Lookups by name, built once: every request is checked against them.
    _inputs: dict[str, TensorSpec] = field(init=False, repr=False, compare=False)
    _outputs: dict[str, TensorSpec] = field(init=False, repr=False, compare=False)
    _views: dict[str, ServableMetadata] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_inputs", {spec.name: spec for spec in self.inputs})
        object.__setattr__(self, "_outputs", {spec.name: spec for spec in self.outputs})
        views = {
            spec.name: ServableMetadata(self.platform, spec.inputs, spec.outputs)
            for spec in self.signature_specs
        }
        object.__setattr__(self, "_views", views)

    def input(self, name: str) -> TensorSpec | None:
        return self._inputs.get(name)

    def output(self, name: str) -> TensorSpec | None:
        return self._outputs.get(name)

    def signature_view(self, name: str) -> ServableMetadata | None:
        """The inputs and outputs of signature ``name`` as metadata of their own; None when
        the signatures do not declare their own (``signature_specs`` is empty) or there is
        no such signature."""
        return self._views.get(name)


@dataclass(frozen=True, slots=True)
class ModelMetadata:
    name: str
    versions: tuple[str, ...]
    platform: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    signatures: tuple[str, ...] = ()
    parameters: Parameters = field(default_factory=dict)
    signature_specs: tuple[SignatureSpec, ...] = ()
    requires_signature: bool = False
