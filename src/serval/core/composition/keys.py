"""Keyed predictions: inputs the model never sees, returned untouched as outputs of the same
name, row-aligned with the answers (``keys`` in ``model.yaml``, docs/keys.md).

``KeyedServable`` is the outermost layer of a keyed model (``app.py``'s layer plan puts it
there), so batching and caches run inside it: keys never enter a batch, and requests merged
into one batch each get their own keys back. A model without keys gets no layer at all.

The contract that keeps keys aligned: the servable inside answers one row per request row, in
request order. A batching servable does (it splits a batch back into its requests); a cascade,
which answers some rows with one stage and the rest with another, reassembles its rows in
request order before it answers, so the keys taken off the request still fit. ``split_keys``
and ``attach_keys`` are the two halves of the layer, for callers that choose their keys
elsewhere (batch serving's ``--key`` columns).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import replace
from typing import NamedTuple

from serval.core.composition.layers import Layer
from serval.core.composition.wrapper import WrappingServable
from serval.core.errors import InvalidInputError, ModelConfigError
from serval.core.model_spec import ModelSpec
from serval.core.servable import Servable
from serval.core.specs.keys import KeySpec
from serval.core.tensors.rows import check_rows
from serval.core.types import (
    InferenceRequest,
    InferenceResponse,
    ServableMetadata,
    Tensor,
)


class TakenKeys(NamedTuple):
    """The key tensors taken off one request (in the order the keys are declared), and which
    of them the client asked to get back."""

    tensors: tuple[Tensor, ...]
    # The request named outputs and every one of them is a key: the model's outputs are
    # dropped from the answer (the model still runs: it checks the rows).
    keys_only: bool = False


def split_keys(
    request: InferenceRequest, names: Sequence[str], shared: Collection[str] = ()
) -> tuple[InferenceRequest, TakenKeys]:
    """The request the model sees (``request`` without the key inputs, and without keys among
    its requested outputs) and the keys taken off it. ``request`` itself is left as it is (the
    prediction record keeps the keys). Keys in ``shared`` are inputs of an inner layer too
    (the features' entity, the precomputed key): they stay among the inputs as well. Raises
    ``InvalidInputError`` naming a key the request lacks, or one whose first dimension is not
    the request's rows."""
    found: dict[str, Tensor] = {}
    inputs: list[Tensor] = []
    for tensor in request.inputs:
        if tensor.name in names:
            # Untouched data; parameters that came with an input (a wire hint) are not the
            # output's, so a tensor that has any is rebuilt without them.
            found[tensor.name] = (
                Tensor(tensor.name, tensor.datatype, tensor.data) if tensor.parameters else tensor
            )
            if tensor.name in shared:
                inputs.append(tensor)
        else:
            inputs.append(tensor)
    if len(found) != len(names):
        missing = ", ".join(repr(name) for name in names if name not in found)
        raise InvalidInputError(
            f"missing key input(s) {missing} for model {request.model_name!r}: a keyed model "
            f"takes each key as an input, one value per row, and returns it as an output"
        )
    keys = tuple(found[name] for name in names)
    if inputs:
        if not inputs[0].data.shape:
            raise InvalidInputError(
                f"model {request.model_name!r} has keys, so its inputs need rows (a first "
                f"dimension); input {inputs[0].name!r} is a scalar"
            )
        check_rows(keys, inputs[0], "key")
    else:  # a model without inputs: the keys agree with each other
        check_rows(keys[1:], keys[0], "key", "key")
    outputs = request.outputs
    keys_only = False
    if outputs is not None:
        model_outputs = [output for output in outputs if output.name not in names]
        keys_only = not model_outputs
        chosen = {output.name for output in outputs}
        keys = tuple(key for key in keys if key.name in chosen)
        outputs = model_outputs or None  # only keys asked for: the model runs as asked nothing
    return request.with_tensors(inputs, outputs), TakenKeys(keys, keys_only)


def attach_keys(response: InferenceResponse, keys: TakenKeys) -> InferenceResponse:
    """``response`` with the keys as its first outputs (the model's follow, unless only keys
    were asked for). Changes ``response`` in place and returns it."""
    model_outputs = [] if keys.keys_only else response.outputs
    response.outputs = [*keys.tensors, *model_outputs]
    return response


class KeyedServable(WrappingServable):
    """The keys layer: takes the key inputs off each request, runs ``inner`` on the rest, and
    answers with the keys first, then ``inner``'s outputs.

    A key is returned unless the request names the outputs it wants and leaves that key out;
    a request that names only keys gets only keys. Metadata: ``inner``'s inputs then the keys,
    ``inner``'s outputs then the keys. Building one raises ``ModelConfigError`` (a load error)
    when a key has the name of one of ``inner``'s inputs or outputs."""

    __slots__ = ("_inner_metadata", "_keys", "_metadata", "_names", "_shared")

    def __init__(
        self, inner: Servable, keys: Sequence[KeySpec], shared: Collection[str] = ()
    ) -> None:
        super().__init__(inner)
        self._keys = tuple(keys)
        self._names = tuple(key.name for key in keys)
        self._shared = frozenset(shared)
        self._inner_metadata = inner.metadata
        self._metadata = keyed_metadata(self._inner_metadata, self._keys, self._shared)

    @property
    def keys(self) -> tuple[KeySpec, ...]:
        return self._keys

    @property
    def metadata(self) -> ServableMetadata:
        inner = self.inner.metadata
        if inner is not self._inner_metadata:  # runtimes keep theirs: rarely taken
            if inner != self._inner_metadata:  # a composite whose steps changed
                self._metadata = keyed_metadata(inner, self._keys, self._shared)
            self._inner_metadata = inner
        return self._metadata

    async def predict(self, request: InferenceRequest) -> InferenceResponse:
        inner_request, keys = split_keys(request, self._names, self._shared)
        return attach_keys(await self.inner.predict(inner_request), keys)


def keyed_metadata(
    metadata: ServableMetadata, keys: Sequence[KeySpec], shared: Collection[str] = ()
) -> ServableMetadata:
    """``metadata`` with each key as an input and as an output (after the model's own; a
    ``shared`` key is an input already). Raises ``ModelConfigError`` naming a key that has the
    name of an input or output (a shared key: of an output, or an input of another type)."""
    for key in keys:
        if key.name in shared:
            spec = metadata.input(key.name)
            clash = (
                "an output"
                if metadata.output(key.name)
                else None
                if spec is None or spec.datatype == key.datatype
                else f"an input of datatype {spec.datatype.value}"
            )
        else:
            clash = (
                "an input"
                if metadata.input(key.name)
                else "an output"
                if metadata.output(key.name)
                else None
            )
        if clash is not None:
            raise ModelConfigError(
                f"keys: key {key.name!r} has the name of {clash} of the model; a key is "
                f"passed around the model, so rename the key"
            )
    specs = tuple(key.tensor_spec for key in keys)
    inputs = tuple(
        spec for spec in specs if spec.name not in shared or not metadata.input(spec.name)
    )
    return replace(metadata, inputs=metadata.inputs + inputs, outputs=metadata.outputs + specs)


def shared_keys(spec: ModelSpec) -> frozenset[str]:
    """Keys that an inner layer takes as an input too: the features' entity and the
    precomputed answers' key inputs (a key may also name the row's entity)."""
    names = {key.name for key in spec.keys}
    inner: set[str] = set()
    if spec.features is not None:
        inner.add(spec.features.entity.name)
    if spec.precomputed is not None:
        inner.update(key.name for key in spec.precomputed.key_input)
    return frozenset(names & inner)


def keys_layer(servable: Servable, spec: ModelSpec) -> Servable:
    """The ``Layer`` for ``spec.keys`` (the layer plan adds it only when there are keys)."""
    return KeyedServable(servable, spec.keys, shared_keys(spec))


def keys_plan(spec: ModelSpec) -> tuple[Layer, ...]:
    """The layers keys add to a plan: the keys layer for a keyed model, outermost (batching
    and caches inside never see keys, docs/keys.md); none otherwise. The server's plan and
    batch scoring's both start from it."""
    return (keys_layer,) if spec.keys else ()
