"""The features layer: fills one model input from an online feature store by each row's
entity before the model runs (``features`` in model.yaml, docs/caching.md).

The entity input is taken off the request (the model never sees it); each distinct entity's
hash is read in one ``fetch`` per request, however many rows, and the fields fill the input
``into`` (after the request's own columns of it with ``append``). An entity without a hash,
or a hash without a field, is refused (400) or filled with defaults; a store that does not
answer is a 503 with ``Retry-After``: without its features the model cannot answer.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from serval.core.composition.feature_values import (
    NUMERIC_DATATYPES,
    BadFeatureValueError,
    check_value,
    parse_values,
)
from serval.core.composition.layer_counters import LayerCounters
from serval.core.composition.stores import FeatureStore, LookupUnavailableError
from serval.core.composition.wrapper import WrappingServable
from serval.core.errors import DependencyUnavailableError, InvalidInputError, ModelConfigError
from serval.core.servable import Servable
from serval.core.specs.features import FeaturesSpec
from serval.core.types import (
    InferenceRequest,
    InferenceResponse,
    ServableId,
    ServableMetadata,
    Tensor,
    TensorSpec,
)

Array = np.ndarray[Any, Any]

# Seconds a client is told to wait when the feature store does not answer (Retry-After).
RETRY_AFTER_S = 1.0


class FeaturesServable(WrappingServable):
    """Takes the entity input off each request, looks up its fields, fills ``spec.into``."""

    __slots__ = ("_counters", "_defaults", "_id", "_into", "_metadata", "_spec", "_store")

    def __init__(
        self,
        inner: Servable,
        spec: FeaturesSpec,
        store: FeatureStore,
        id: ServableId,
        counters: LayerCounters,
    ) -> None:
        super().__init__(inner)
        self._spec = spec
        self._store = store
        self._id = id
        self._counters = counters
        self._into = _checked_into(inner.metadata, spec)
        dtype = self._into.datatype.numpy_dtype
        # One row of defaults, in the input's datatype (checked to fit it above).
        self._defaults: Array = np.array(
            [spec.defaults.get(name, 0) for name in spec.fields], dtype=np.float64
        ).astype(dtype)
        self._metadata = features_metadata(inner.metadata, spec)

    @property
    def metadata(self) -> ServableMetadata:
        return self._metadata

    async def predict(self, request: InferenceRequest) -> InferenceResponse:
        spec = self._spec
        entity, sent_into, others = self._split(request)
        texts, inverse = _entity_texts(entity)
        keys = [spec.key_of(text) for text in texts]
        values = await self._fetch(keys) if keys else []
        unique = self._matrix(values, texts, keys, inverse)
        looked_up = unique[inverse]
        if sent_into is not None:
            looked_up = np.concatenate(
                [sent_into.data.astype(looked_up.dtype, copy=False), looked_up], axis=1
            )
        filled = Tensor(spec.into, self._into.datatype, looked_up)
        return await self.inner.predict(request.with_tensors([*others, filled], request.outputs))

    def _split(self, request: InferenceRequest) -> tuple[Tensor, Tensor | None, list[Tensor]]:
        """The entity tensor, the request's own columns of ``into`` (with ``append``) and the
        inputs kept as sent; raises ``InvalidInputError`` for a request that does not fit."""
        spec = self._spec
        name, into = spec.entity.name, spec.into
        entity: Tensor | None = None
        sent_into: Tensor | None = None
        others: list[Tensor] = []
        for tensor in request.inputs:
            if tensor.name == name:
                entity = tensor
            elif tensor.name == into:
                sent_into = tensor
            else:
                others.append(tensor)
        model = request.model_name
        if entity is None:
            raise InvalidInputError(
                f"missing input {name!r} for model {model!r}: it names each row's entity, "
                f"whose features fill input {into!r}"
            )
        if entity.data.ndim != 1:
            raise InvalidInputError(
                f"input {name!r} of model {model!r}: one entity per row (shape [-1]), "
                f"received shape {list(entity.data.shape)}"
            )
        rows = entity.data.shape[0]
        if spec.append:
            if sent_into is None:
                raise InvalidInputError(
                    f"missing input {into!r} for model {model!r}: the request sends its first "
                    f"columns, and the features of {name!r} follow them"
                )
            self._check_sent_into(sent_into, rows, model)
        elif sent_into is not None:
            raise InvalidInputError(
                f"input {into!r} of model {model!r} is filled from the feature store by "
                f"{name!r}; do not send it"
            )
        for tensor in others:
            shape = tensor.data.shape
            if shape and shape[0] != rows:
                raise InvalidInputError(
                    f"input {tensor.name!r} has {shape[0]} rows, but {name!r} has {rows}: "
                    f"one entity per row"
                )
        return entity, sent_into, others

    def _check_sent_into(self, sent: Tensor, rows: int, model: str) -> None:
        shape = sent.data.shape
        width = self._into.shape[1]
        fields = len(self._spec.fields)
        if len(shape) != 2 or shape[0] != rows or (width != -1 and shape[1] + fields != width):
            want = "-1" if width == -1 else str(width - fields)
            raise InvalidInputError(
                f"input {sent.name!r} of model {model!r}: expected shape [{rows}, {want}] (one "
                f"row per entity; the {fields} looked-up column(s) follow), received "
                f"{list(shape)}"
            )

    async def _fetch(self, keys: list[str]) -> list[list[bytes | None]]:
        self._count("lookups", 1)  # one round trip, whatever the rows
        try:
            return await self._store.fetch(keys, self._spec.fields)
        except LookupUnavailableError as exc:
            self._count("unavailable", 1)
            raise DependencyUnavailableError(
                f"model {self._id.name!r}: the feature store is unreachable ({exc}); the model "
                f"cannot answer without its features, retry later",
                retry_after_s=RETRY_AFTER_S,
            ) from exc

    def _matrix(
        self, values: list[list[bytes | None]], texts: list[str], keys: list[str], inverse: Array
    ) -> Array:
        """The ``[entities, fields]`` matrix of the distinct entities, with the absent values
        refused or defaulted, and the rows counted."""
        spec = self._spec
        raw = np.empty((len(keys), len(spec.fields)), dtype=np.object_)
        if keys:
            raw[...] = values
        absent: Array = np.equal(raw, np.array(None))  # elementwise `is None`
        incomplete = absent.any(axis=1)
        rows_of = np.bincount(inverse, minlength=len(keys))
        short = int(rows_of[incomplete].sum())
        if short and spec.missing == "error":
            self._count("unknown", short)
            first = int(np.argmax(incomplete))
            raise self._missing_error(texts[first], keys[first], absent[first])
        if short:
            raw[absent] = b"0"  # parsed, then replaced by the defaults below
        try:
            matrix = parse_values(raw, self._into.datatype)
        except BadFeatureValueError as bad:
            raise InvalidInputError(
                f"features of entity {texts[bad.row]!r} (input {spec.entity.name!r}, key "
                f"{keys[bad.row]!r}): field {spec.fields[bad.column]!r} is {bad.value!r}, "
                f"which {bad.reason} for input {spec.into!r}"
            ) from None
        if short:
            matrix = np.where(absent, self._defaults, matrix)
            self._count("defaulted", short)
        self._count("found", int(inverse.shape[0]) - short)
        return matrix

    def _missing_error(self, text: str, key: str, absent: Array) -> InvalidInputError:
        spec = self._spec
        name = spec.entity.name
        if bool(absent.all()):
            return InvalidInputError(
                f"unknown entity {text!r} (input {name!r}): the feature store has no hash {key!r}"
            )
        fields = ", ".join(repr(f) for f, gone in zip(spec.fields, absent, strict=True) if gone)
        return InvalidInputError(
            f"entity {text!r} (input {name!r}) has no value for field(s) {fields} in the "
            f"feature store's hash {key!r}"
        )

    def _count(self, outcome: str, count: int) -> None:
        if count:
            self._counters.add("features", self._id.name, "", outcome, count)


def _entity_texts(entity: Tensor) -> tuple[list[str], Array]:
    """The distinct entities of ``entity`` as text (BYTES: UTF-8; integers: decimal), in
    order of first appearance, and each row's index among them."""
    data = entity.data
    if data.dtype.kind in "iu":
        unique, first, inverse = np.unique(data, return_index=True, return_inverse=True)
        # np.unique sorts; the store is asked in order of first appearance (easier to read).
        order = np.argsort(first, kind="stable")
        rank = np.empty_like(order)
        rank[order] = np.arange(order.shape[0])
        return [str(value) for value in unique[order].tolist()], rank[inverse]
    if data.dtype.kind not in "OSU":
        raise InvalidInputError(
            f"input {entity.name!r}: an entity is a string (BYTES) or an integer (INT64), "
            f"received {entity.datatype.value}"
        )
    index: dict[str, int] = {}
    rows = np.empty(data.shape[0], dtype=np.intp)
    for row, value in enumerate(data.tolist()):
        text = _text(value, entity.name, row)
        rows[row] = index.setdefault(text, len(index))
    return list(index), rows


def _text(value: object, name: str, row: int) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        try:
            return value.decode()
        except UnicodeDecodeError:
            raise InvalidInputError(
                f"input {name!r}, row {row}: the entity {value!r} is not UTF-8 text"
            ) from None
    raise InvalidInputError(f"input {name!r}, row {row}: the entity {value!r} is not text")


def _checked_into(metadata: ServableMetadata, spec: FeaturesSpec) -> TensorSpec:
    """The model's input ``spec.into``; raises ``ModelConfigError`` naming the model.yaml
    field when the section does not fit the model."""
    fields = len(spec.fields)
    names = ", ".join(repr(s.name) for s in metadata.inputs) or "none"
    into = metadata.input(spec.into)
    if into is None:
        raise ModelConfigError(
            f"features.into: {spec.into!r} is not an input of the model (its inputs: {names})"
        )
    if into.datatype not in NUMERIC_DATATYPES:
        raise ModelConfigError(
            f"features.into: input {spec.into!r} is {into.datatype.value}; features fill an "
            f"input of numbers (FP16/FP32/FP64, INT8-64 or UINT8-64)"
        )
    width = into.shape[1] if len(into.shape) == 2 else None
    if len(into.shape) != 2 or into.shape[0] != -1:
        raise ModelConfigError(
            f"features.into: input {spec.into!r} has shape {list(into.shape)}; features fill "
            f"an input of shape [-1, {fields}] (one row per entity, one column per field)"
        )
    if spec.append and width != -1 and width is not None and width <= fields:
        raise ModelConfigError(
            f"features.append: input {spec.into!r} has {width} columns, so it has no room for "
            f"the request's own columns before the {fields} field(s)"
        )
    if not spec.append and width not in (-1, fields):
        raise ModelConfigError(
            f"features.fields: {fields} field(s), but input {spec.into!r} has {width} "
            f"columns (shape {list(into.shape)})"
        )
    if metadata.input(spec.entity.name) is not None:
        raise ModelConfigError(
            f"features.entity: {spec.entity.name!r} is already an input of the model; the "
            f"entity is taken off the request before the model runs, so name another input"
        )
    for name, value in spec.defaults.items():
        reason = check_value(value, into.datatype)
        if reason is not None:
            raise ModelConfigError(
                f"features.defaults: {name} = {value} {reason} (input {spec.into!r})"
            )
    return into


def features_metadata(metadata: ServableMetadata, spec: FeaturesSpec) -> ServableMetadata:
    """``metadata`` as clients of the features layer see it: without ``into`` (with ``append``,
    ``into`` narrowed to the request's own columns), with the entity input last."""
    inputs: list[TensorSpec] = []
    for tensor in metadata.inputs:
        if tensor.name != spec.into:
            inputs.append(tensor)
        elif spec.append:
            width = tensor.shape[1]
            narrowed = -1 if width == -1 else width - len(spec.fields)
            inputs.append(replace(tensor, shape=(tensor.shape[0], narrowed)))
    return replace(metadata, inputs=(*inputs, spec.entity.tensor_spec))
