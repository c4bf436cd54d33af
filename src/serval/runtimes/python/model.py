"""The public base class of custom Python models: ``model.py`` defines one subclass.

    from serval import ServingModel, TensorInfo, signature

    class Model(ServingModel):
        inputs = [TensorInfo("text", "BYTES")]
        outputs = [TensorInfo("label", "BYTES")]
        input_format = "strings"

        def load(self) -> None:
            self.words = (self.path / "words.txt").read_text().split()

        def predict(self, data):
            return [w if w in self.words else "?" for w in data["text"]]

        @signature(outputs=[TensorInfo("length", "INT64")])
        def explain(self, data):
            return {"length": [len(t) for t in data["text"]]}

See docs/runtimes/python.md.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

InputFormat = Literal["numpy", "pandas", "strings"]
ParameterValue = str | int | float | bool

SIGNATURE_ATTRIBUTE = "__serval_signature__"
F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True)
class TensorInfo:
    """One input or output: its name, Open Inference Protocol datatype (``"FP32"``,
    ``"INT64"``, ``"BYTES"`` ...) and shape, the batch dimension first; -1 is any size."""

    name: str
    datatype: str
    shape: Sequence[int] = (-1,)


@dataclass(frozen=True, slots=True)
class SignatureInfo:
    outputs: tuple[TensorInfo, ...]
    name: str | None = None


def signature(*, outputs: Sequence[TensorInfo], name: str | None = None) -> Callable[[F], F]:
    """Mark a method as a signature a request selects with the parameter ``signature``
    (named after the method unless ``name`` is given). It takes the same inputs as ``predict``
    and returns ``outputs``. It may be ``async``."""

    def mark(method: F) -> F:
        setattr(method, SIGNATURE_ATTRIBUTE, SignatureInfo(tuple(outputs), name))
        return method

    return mark


class ServingModel:
    """Base class of a custom model served by the ``python`` runtime.

    **The stateless contract.** A prediction's outputs depend only on its inputs and on what
    ``load()`` read from the version folder: no state kept between requests, no reliance on
    which process or thread serves a request. serval may run several copies (worker
    processes, replicas), call methods from several threads at once, and restart a copy at any
    time; a model that keeps the contract is correct under all of these.

    **Declaring the interface.** ``inputs`` lists the inputs every signature takes;
    ``outputs`` lists what ``predict`` returns. More signatures are methods marked with
    ``@signature(outputs=[...])``; a request picks one with the parameter ``signature``
    (default ``predict``). The model metadata lists them under ``signatures``.

    **Inputs** reach ``preprocess`` (then the signature) as ``input_format`` says:

    - ``"numpy"`` (default): ``{name: numpy array}``; BYTES inputs as object arrays of bytes.
    - ``"strings"``: as ``numpy``, but BYTES inputs decoded from UTF-8 to lists of ``str``.
    - ``"pandas"``: a ``pandas.DataFrame`` with one column per input (each of shape ``[-1]``
      or ``[-1, 1]``); BYTES decoded to ``str``.

    **Outputs**: a signature (or ``postprocess``) returns ``{name: array-like}``, or a single
    array-like when it declares one output. Values are converted to the declared datatype
    (``str`` to UTF-8 BYTES).

    **Methods** ``load``, ``preprocess``, ``predict``, ``postprocess`` and every signature may
    be plain or ``async``; plain ones run on the server's inference threads (or in worker
    processes with ``runtime_options.isolation: process``), ``async`` ones on a private event
    loop. Raise ``serval.InvalidInputError`` for a bad request (HTTP 400); any other
    exception is reported as a model failure (HTTP 500).

    The runtime builds the model with no arguments, then sets ``path`` (the version folder)
    and ``parameters`` (``model.yaml``'s ``parameters``) before calling ``load()``.
    """

    inputs: ClassVar[Sequence[TensorInfo]] = ()
    outputs: ClassVar[Sequence[TensorInfo]] = ()
    input_format: ClassVar[InputFormat] = "numpy"

    path: Path
    parameters: Mapping[str, ParameterValue]

    def load(self) -> Any:
        """Read artifacts from ``self.path``; runs once per copy, before any request."""
        return None

    def preprocess(self, data: Any) -> Any:
        """Turn decoded inputs into what the signatures take (default: unchanged)."""
        return data

    def predict(self, data: Any) -> Any:
        """The default signature."""
        raise NotImplementedError("a ServingModel must define predict()")

    def postprocess(self, outputs: Any) -> Any:
        """Turn a signature's result into the outputs (default: unchanged)."""
        return outputs
