"""The precomputed layer: rows whose key a batch job answered are served from the store; the
rest go to the model or are refused (``precomputed`` in model.yaml, docs/caching.md).

Each row's key is the text of its key inputs (``stores.precomputed_key``, the batch job's
``--key`` columns), looked up in one round trip per request. A row is answered from the
store when its answer is fresh (``max_age_s``) and has every output the response returns, in
a form the model's metadata allows; the others run on the model in one call with only those
rows (``fallback: model``) or are refused with a 404 naming their keys (``fallback: error``).
The answer keeps request row order and says where each row came from (output ``source``).

A store that does not answer is counted and, with ``fallback: model``, every row goes to the
model: precomputed answers save work, they are never the only way to an answer.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from serval.core.composition.layer_counters import LayerCounters
from serval.core.composition.precomputed_answers import (
    FROM_MODEL,
    FROM_STORE,
    SOURCE,
    SOURCE_SPEC,
    Array,
    merge_outputs,
    response_outputs,
    usable_outputs,
)
from serval.core.composition.stores import (
    LookupUnavailableError,
    PrecomputedAnswer,
    PrecomputedReader,
    precomputed_key,
)
from serval.core.composition.wrapper import WrappingServable
from serval.core.errors import (
    AnswerNotFoundError,
    DependencyUnavailableError,
    InvalidInputError,
    ModelConfigError,
)
from serval.core.servable import Servable
from serval.core.specs.keys import KeySpec
from serval.core.specs.precomputed import PrecomputedSpec
from serval.core.tensors.rows import take_rows
from serval.core.types import (
    InferenceRequest,
    InferenceResponse,
    InferenceTimings,
    RequestedOutput,
    ServableId,
    ServableMetadata,
    Tensor,
    TensorSpec,
)

logger = logging.getLogger(__name__)

# Keys a 404 names; the message says how many more there were.
NAMED_KEYS = 5


class PrecomputedServable(WrappingServable):
    """Answers rows from ``reader`` by key; the others from ``inner`` (or a 404).

    Metadata: ``inner``'s inputs and the key inputs it lacks; ``inner``'s outputs and
    ``source``. Building one raises ``ModelConfigError`` naming the field when a key input
    that ``inner`` takes too has another datatype, or ``inner`` has an output ``source``."""

    __slots__ = (
        "_counters",
        "_fallback_model",
        "_id",
        "_inner_metadata",
        "_keys",
        "_logged",
        "_max_age_s",
        "_metadata",
        "_model",
        "_names",
        "_reader",
        "_shared",
    )

    def __init__(
        self,
        inner: Servable,
        spec: PrecomputedSpec,
        reader: PrecomputedReader,
        id: ServableId,
        counters: LayerCounters,
    ) -> None:
        super().__init__(inner)
        self._reader = reader
        self._id = id
        self._counters = counters
        self._model = spec.model or id.name
        self._keys = spec.key_input
        self._names = frozenset(key.name for key in spec.key_input)
        self._fallback_model = spec.fallback == "model"
        self._max_age_s = spec.max_age_s
        # Reasons an answer could not serve, each logged once (they repeat for every row).
        self._logged: set[str] = set()
        self._inner_metadata = inner.metadata
        self._metadata, self._shared = precomputed_metadata(self._inner_metadata, self._keys)

    @property
    def metadata(self) -> ServableMetadata:
        inner = self.inner.metadata
        if inner is not self._inner_metadata:  # runtimes keep theirs: rarely taken
            if inner != self._inner_metadata:  # a composite whose steps changed
                self._metadata, self._shared = precomputed_metadata(inner, self._keys)
            self._inner_metadata = inner
        return self._metadata

    async def predict(self, request: InferenceRequest) -> InferenceResponse:
        metadata = self.metadata  # refreshes _shared too
        inner_metadata = self._inner_metadata
        keys, inputs = self._split(request)
        names, wanted = response_outputs(request, inner_metadata)
        rows = len(keys[0].data)
        columns = [key.data.tolist() for key in keys]
        texts = [precomputed_key(values) for values in zip(*columns, strict=True)]
        distinct = list(dict.fromkeys(texts))
        try:
            found = await self._reader.get_many(self._model, distinct) if distinct else []
        except LookupUnavailableError as exc:
            self._count("unavailable")
            if not self._fallback_model:
                raise DependencyUnavailableError(
                    f"the precomputed answers of model {self._model!r} cannot be read now "
                    f"(their store does not answer); retry later",
                    retry_after_s=1,
                ) from exc
            found = [None] * len(distinct)
        answers = self._usable(distinct, found, texts, wanted)
        answer_of = [answers.get(text) for text in texts]
        model_rows = np.array([i for i, a in enumerate(answer_of) if a is None], dtype=np.intp)
        if len(model_rows) and not self._fallback_model:
            self._count("missing", len(model_rows))
            raise AnswerNotFoundError(_not_found(self._model, texts, model_rows))
        response: InferenceResponse | None = None
        if len(model_rows) or not rows:  # no rows: the model says what an empty answer is
            response = await self.inner.predict(
                self._model_request(request, inputs, model_rows, rows)
            )
        stored_rows = np.array([i for i, a in enumerate(answer_of) if a is not None], np.intp)
        self._count("precomputed", len(stored_rows))
        self._count("model", len(model_rows))
        source = np.full(rows, FROM_MODEL, dtype=np.object_)
        source[stored_rows] = FROM_STORE
        stored = [answers[texts[i]][1] for i in stored_rows]
        outputs = merge_outputs(
            names, rows, metadata, stored, stored_rows, response, model_rows, source
        )
        parameters: dict[str, Any] = {} if response is None else dict(response.parameters)
        if len(stored_rows):
            versions = sorted({answer.version for answer, _ in answers.values()})
            parameters["precomputed_versions"] = ",".join(str(v) for v in versions)
        if response is None:
            return InferenceResponse(
                request.model_name,
                outputs,
                id=request.id,
                parameters=parameters,
                timings=InferenceTimings(executions=0),
            )
        response.outputs = outputs
        response.parameters = parameters
        return response

    def _split(self, request: InferenceRequest) -> tuple[list[Tensor], list[Tensor]]:
        """The key tensors (in ``key_input`` order) and the inputs the model gets."""
        found: dict[str, Tensor] = {}
        inputs: list[Tensor] = []
        for tensor in request.inputs:
            if tensor.name in self._names:
                found[tensor.name] = tensor
                if tensor.name in self._shared:
                    inputs.append(tensor)
            else:
                inputs.append(tensor)
        missing = [key.name for key in self._keys if key.name not in found]
        if missing:
            raise InvalidInputError(
                f"missing key input(s) {', '.join(repr(n) for n in missing)} for model "
                f"{request.model_name!r}: its precomputed answers are found by them "
                f"(one value per row)"
            )
        keys = [found[key.name] for key in self._keys]
        rows = keys[0].data.shape[0] if keys[0].data.ndim else None
        for tensor in keys:
            if tensor.data.ndim != 1 or tensor.data.shape[0] != rows:
                raise InvalidInputError(
                    f"key input {tensor.name!r} has shape {list(tensor.data.shape)}: a key of "
                    f"model {request.model_name!r} is one value per row, as many as key "
                    f"{keys[0].name!r} has"
                )
        return keys, inputs

    def _usable(
        self,
        distinct: Sequence[str],
        found: Sequence[PrecomputedAnswer | None],
        texts: Sequence[str],
        wanted: Sequence[TensorSpec],
    ) -> dict[str, tuple[PrecomputedAnswer, dict[str, Array]]]:
        """The answers that can serve, by key, with their outputs converted."""
        usable: dict[str, tuple[PrecomputedAnswer, dict[str, Array]]] = {}
        oldest = None if self._max_age_s is None else time.time() - self._max_age_s
        stale: set[str] = set()
        # Every answer of one output must have one row shape (a -1 dimension may vary between
        # batch runs): the first answer decides, the others that differ go to the model.
        shapes: dict[str, tuple[int, ...]] = {}
        for text, answer in zip(distinct, found, strict=True):
            if answer is None:
                continue
            if oldest is not None and (answer.written_at is None or answer.written_at < oldest):
                stale.add(text)
                continue
            outputs = usable_outputs(answer, wanted)
            if isinstance(outputs, str):
                self._log_once(outputs)
                continue
            differs = [n for n, v in outputs.items() if shapes.setdefault(n, v.shape) != v.shape]
            if differs:
                self._log_once(f"output {differs[0]!r} has rows of different shapes")
                continue
            usable[text] = (answer, outputs)
        if stale:
            self._count("stale", sum(1 for text in texts if text in stale))
        return usable

    def _model_request(
        self, request: InferenceRequest, inputs: list[Tensor], model_rows: Array, rows: int
    ) -> InferenceRequest:
        """``request`` for the model: only ``model_rows``, without the keys it does not take,
        asking for the requested outputs other than ``source``."""
        if len(model_rows) != rows:
            for tensor in inputs:
                if not tensor.data.ndim or tensor.data.shape[0] != rows:
                    raise InvalidInputError(
                        f"input {tensor.name!r} has shape {list(tensor.data.shape)}, but the "
                        f"keys of model {request.model_name!r} have {rows} rows: each input "
                        f"has one row per key"
                    )
            inputs = [take_rows(tensor, model_rows) for tensor in inputs]
        outputs: list[RequestedOutput] | None = None
        if request.outputs is not None:
            outputs = [output for output in request.outputs if output.name != SOURCE] or None
        return request.with_tensors(inputs, outputs)

    def _log_once(self, reason: str) -> None:
        if reason not in self._logged:
            self._logged.add(reason)
            logger.warning(
                "precomputed answers of model %r: an answer %s, so its rows go to the %s "
                "(logged once)",
                self._model,
                reason,
                "model" if self._fallback_model else "404 of a missing answer",
            )

    def _count(self, outcome: str, rows: int = 1) -> None:
        # Under the serving model's name (the metrics' model label, as the cache counts),
        # also when the answers are read under the batch job's ``precomputed.model``.
        if rows:
            self._counters.add("precomputed", self._id.name, "", outcome, rows)


def precomputed_metadata(
    metadata: ServableMetadata, keys: Sequence[KeySpec]
) -> tuple[ServableMetadata, frozenset[str]]:
    """``metadata`` with the key inputs it lacks and the output ``source``, and the key
    inputs it has already (shared: they stay among the model's inputs). Raises
    ``ModelConfigError`` naming the field that cannot be served."""
    shared: set[str] = set()
    for key in keys:
        spec = metadata.input(key.name)
        if spec is None:
            continue
        if spec.datatype != key.datatype or len(spec.shape) != 1:
            raise ModelConfigError(
                f"precomputed.key_input: {key.name!r} is also an input of the model, of "
                f"datatype {spec.datatype.value} and shape {list(spec.shape)}; the key is "
                f"declared {key.datatype.value}, one value per row: declare it as the "
                f"model's input (datatype: {spec.datatype.value}) or rename the key"
            )
        shared.add(key.name)
    if metadata.output(SOURCE) is not None:
        raise ModelConfigError(
            f"precomputed: the model has an output {SOURCE!r}, the name of the output that "
            f"says where each row's answer came from; rename the model's output"
        )
    inputs = tuple(key.tensor_spec for key in keys if key.name not in shared)
    merged = replace(
        metadata, inputs=metadata.inputs + inputs, outputs=(*metadata.outputs, SOURCE_SPEC)
    )
    return merged, frozenset(shared)


def _not_found(model: str, texts: Sequence[str], rows: Array) -> str:
    """The 404's message: the first few keys without an answer, and how many there were."""
    missing = list(dict.fromkeys(texts[i] for i in rows))
    named = ", ".join(repr(text) for text in missing[:NAMED_KEYS])
    more = len(missing) - NAMED_KEYS
    return (
        f"no precomputed answer of model {model!r} for key{'s' if len(missing) > 1 else ''} "
        f"{named}{f' (and {more} more)' if more > 0 else ''}; its precomputed answers are all "
        f"it serves (fallback: error)"
    )
