"""Loads a ``model.py`` and runs its signatures: the same code in the server process
(``isolation: thread``) and in worker processes (``isolation: process``)."""

from __future__ import annotations

import asyncio
import inspect
import sys
import threading
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from serval.core.errors import (
    InvalidInputError,
    ModelExecutionError,
    ModelLoadError,
)
from serval.core.tensors.datatypes import DataType
from serval.core.types import Parameters, ServableMetadata, Tensor
from serval.runtimes.encoding import decode_strings, to_tensor
from serval.runtimes.python.declaration import (
    DEFAULT_SIGNATURE,
    Signature,
    describe_user_error,
    read_declaration,
)
from serval.runtimes.python.model import ServingModel

PLATFORM = "python"


@dataclass(frozen=True, slots=True)
class ModelDescription:
    """What the server needs to know of a loaded model (picklable: workers send it back)."""

    metadata: ServableMetadata
    signature_outputs: Mapping[str, tuple[str, ...]]

    def check_call(self, parameters: Parameters, wanted: Sequence[str] | None) -> str:
        """The signature a request selects; raises ``InvalidInputError`` when it or a requested
        output does not exist."""
        name = parameters.get("signature", DEFAULT_SIGNATURE)
        outputs = self.signature_outputs.get(name) if isinstance(name, str) else None
        if outputs is None:
            known = ", ".join(self.signature_outputs)
            raise InvalidInputError(f"unknown signature {name!r}; this model has: {known}")
        for output in wanted or ():
            if output not in outputs:
                raise InvalidInputError(
                    f"output {output!r} is not an output of signature {name!r} "
                    f"(it has: {', '.join(outputs)})"
                )
        assert isinstance(name, str)
        return name


class ModelRunner:
    """One loaded copy of a custom model. ``run`` may be called from several threads."""

    def __init__(self, label: str) -> None:
        self._label = label  # "model 'x' version 1", for messages
        self._async: _AsyncBridge | None = None
        self._async_lock = threading.Lock()
        self._module_name = f"_serval_model_{uuid.uuid4().hex}"
        self._model: ServingModel
        self._signatures: dict[str, Signature] = {}
        self._format = "numpy"
        self.description: ModelDescription

    @classmethod
    def load(cls, folder: Path, parameters: Mapping[str, Any], label: str) -> ModelRunner:
        runner = cls(label)
        try:
            runner._load(folder, parameters)
        except BaseException:
            runner.close()
            raise
        return runner

    def _load(self, folder: Path, parameters: Mapping[str, Any]) -> None:
        declared = read_declaration(folder, self._module_name)
        self._format = declared.input_format
        self._signatures = declared.signatures
        model = declared.model_class()
        model.path = folder
        model.parameters = dict(parameters)
        self._model = model
        try:
            self._call(model.load)
        except GeneratorExit:
            raise
        except BaseException as exc:  # SystemExit too: a model must not stop the server
            raise ModelLoadError(
                f"{declared.model_class.__name__}.load() failed: {describe_user_error(exc, folder)}"
            ) from exc
        self.description = ModelDescription(
            ServableMetadata(
                platform=PLATFORM,
                inputs=declared.inputs,
                outputs=declared.outputs,
                signatures=tuple(self._signatures),
            ),
            {name: tuple(s.name for s in sig.outputs) for name, sig in self._signatures.items()},
        )

    def run(
        self, inputs: Sequence[Tensor], signature: str, wanted: Sequence[str] | None
    ) -> list[Tensor]:
        chosen = self._signatures[signature]
        model = self._model
        try:
            data = self._call(model.preprocess, self._decode(inputs))
            result = self._call(model.postprocess, self._call(getattr(model, chosen.method), data))
        except Exception:
            raise
        except GeneratorExit:
            raise
        except BaseException as exc:  # SystemExit & co.: an error of the model, nothing more
            raise ModelExecutionError(
                f"{self._label} raised {type(exc).__name__}: {exc}; the server keeps running"
            ) from exc
        return self._encode(chosen, result, wanted)

    def close(self) -> None:
        if self._async is not None:
            self._async.close()
        sys.modules.pop(self._module_name, None)

    # -- calling user code ----------------------------------------------------------------

    def _call(self, method: Callable[..., Any], *arguments: Any) -> Any:
        result = method(*arguments)
        if inspect.isawaitable(result):
            result = self._bridge().run(result)
        return result

    def _bridge(self) -> _AsyncBridge:
        with self._async_lock:
            if self._async is None:
                self._async = _AsyncBridge()
            return self._async

    def _decode(self, inputs: Sequence[Tensor]) -> Any:
        if self._format == "numpy":
            return {tensor.name: tensor.data for tensor in inputs}
        columns = {
            t.name: decode_strings(t) if t.datatype is DataType.BYTES else t.data for t in inputs
        }
        if self._format == "strings":
            return {
                name: value.tolist() if value.dtype.kind == "O" else value
                for name, value in columns.items()
            }
        import pandas as pd  # noqa: PLC0415 - only models that ask for DataFrames need pandas

        try:
            return pd.DataFrame({name: value.reshape(-1) for name, value in columns.items()})
        except ValueError as exc:
            raise InvalidInputError(f"inputs do not form a table: {exc}") from exc

    def _encode(self, chosen: Signature, result: Any, wanted: Sequence[str] | None) -> list[Tensor]:
        if hasattr(result, "columns") and hasattr(result, "to_numpy"):  # a DataFrame
            result = {str(column): result[column].to_numpy() for column in result.columns}
        elif not isinstance(result, Mapping):
            if len(chosen.outputs) != 1:
                names = ", ".join(spec.name for spec in chosen.outputs)
                raise ModelExecutionError(
                    f"{self._label}: signature {chosen.name!r} declares outputs {names}; "
                    f"return a dict of them"
                )
            result = {chosen.outputs[0].name: result}
        tensors = []
        for spec in chosen.outputs:
            if wanted is not None and spec.name not in wanted:
                continue
            if spec.name not in result:
                raise ModelExecutionError(
                    f"{self._label}: signature {chosen.name!r} returned no output {spec.name!r}"
                )
            try:
                tensor = to_tensor(spec, result[spec.name])
            except (TypeError, ValueError) as exc:
                raise ModelExecutionError(
                    f"{self._label}: output {spec.name!r} is not {spec.datatype}: {exc}"
                ) from exc
            if not spec.accepts_shape(tensor.shape):
                raise ModelExecutionError(
                    f"{self._label}: output {spec.name!r} has shape {list(tensor.shape)}; "
                    f"the model declares {list(spec.shape)}"
                )
            tensors.append(tensor)
        return tensors


class _AsyncBridge:
    """A private event loop on its own thread, where ``async`` model methods run."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="serval-model-loop", daemon=True
        )
        self._thread.start()

    def run(self, awaitable: Awaitable[Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(_wrap(awaitable), self._loop).result()

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        if not self._thread.is_alive():
            self._loop.close()


def _wrap(awaitable: Awaitable[Any]) -> Coroutine[Any, Any, Any]:
    async def wait() -> Any:
        return await awaitable

    return wait()
