"""serval: a model server speaking the Open Inference Protocol and TF Serving's REST API."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# The API of custom Python models (docs/runtimes/python.md), imported on first use so that
# `import serval` stays light.
_PUBLIC = {
    "ServingModel": "serval.runtimes.python.model",
    "TensorInfo": "serval.runtimes.python.model",
    "signature": "serval.runtimes.python.model",
    "InvalidInputError": "serval.core.errors",
}
__all__ = ["InvalidInputError", "ServingModel", "TensorInfo", "__version__", "signature"]

if TYPE_CHECKING:
    from serval.core.errors import InvalidInputError
    from serval.runtimes.python.model import ServingModel, TensorInfo, signature


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'serval' has no attribute {name!r}")
    import importlib  # noqa: PLC0415

    return getattr(importlib.import_module(module), name)
