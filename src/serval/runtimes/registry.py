"""Runtime registry: runtime name -> loader class, imported only when a model needs it.

The runtime is the one ``model.yaml`` names or, without one, the one whose artifact file name is
in the version folder (``model.py`` first: a custom model may ship any other file). Third-party
packages add runtimes through the ``serval.runtimes`` entry-point group
(name -> ``module:LoaderClass``); those are chosen by name in ``model.yaml``.

The runtime's module is imported in ``load()``, on a load thread: importing a framework takes up
to seconds and must not stall the event loop.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Protocol

from serval.core.errors import ModelConfigError
from serval.core.lifecycle.loader import Loader, LoadRequest
from serval.core.servable import Predictor

ENTRY_POINT_GROUP = "serval.runtimes"


class LoaderClass(Protocol):
    def __call__(self, request: LoadRequest) -> Loader: ...


@dataclass(frozen=True, slots=True)
class RuntimeEntry:
    name: str
    target: str  # "module:Class", imported on first use
    artifacts: tuple[str, ...]  # file names this runtime recognises, in order of preference
    requirement: str  # what `pip install` needs for it


BUILTIN_RUNTIMES: tuple[RuntimeEntry, ...] = (
    RuntimeEntry(
        "python",
        "serval.runtimes.python.loader:PythonLoader",
        ("model.py",),
        "serval-server[python]",
    ),
    # Before the runtimes whose files an MLflow model holds (model.skops, model.onnx...).
    RuntimeEntry(
        "mlflow",
        "serval.runtimes.mlflow.pyfunc:MlflowLoader",
        ("MLmodel",),
        "serval-server[mlflow]",
    ),
    RuntimeEntry("onnx", "serval.runtimes.onnx:OnnxLoader", ("model.onnx",), "serval-server[onnx]"),
    RuntimeEntry(
        "sklearn",
        "serval.runtimes.sklearn:SklearnLoader",
        ("model.skops", "model.joblib", "model.pkl"),
        "serval-server[sklearn]",
    ),
    # model.json is ambiguous (any JSON file); serval reads it as an XGBoost model.
    RuntimeEntry(
        "xgboost",
        "serval.runtimes.xgboost:XGBoostLoader",
        ("model.ubj", "model.json"),
        "serval-server[xgboost]",
    ),
    RuntimeEntry(
        "lightgbm",
        "serval.runtimes.lightgbm:LightGBMLoader",
        ("model.txt",),
        "serval-server[lightgbm]",
    ),
    # saved_model.pb: TF Serving's layout; model.savedmodel: Triton's (a folder).
    RuntimeEntry(
        "tensorflow",
        "serval.runtimes.tensorflow:TensorFlowLoader",
        ("saved_model.pb", "model.savedmodel", "model.keras"),
        "serval-server[tensorflow]",
    ),
    # An MLflow model's flavor file served by serval's runtime for it: named in model.yaml
    # only; it needs the extra of that runtime, not MLflow.
    RuntimeEntry("native", "serval.runtimes.mlflow.native:NativeLoader", (), "serval-server"),
    # model.pt is Triton's name for TorchScript; model.pt2 a torch.export program; model.pth
    # (TorchServe's) a pickled module, loaded only when trusted.
    RuntimeEntry(
        "torch",
        "serval.runtimes.pytorch.loader:TorchLoader",
        ("model.pt2", "model.pt", "model.pth"),
        "serval-server[torch]",
    ),
)


class RuntimeRegistry:
    """Chooses a runtime for each version and builds its loader (a ``LoaderFactory``)."""

    def __init__(self, entries: Mapping[str, RuntimeEntry]) -> None:
        self._entries = dict(entries)

    @classmethod
    def default(cls) -> RuntimeRegistry:
        """The built-in runtimes plus those of installed packages (which may replace one)."""
        entries = {entry.name: entry for entry in BUILTIN_RUNTIMES}
        for point in entry_points(group=ENTRY_POINT_GROUP):
            requirement = point.dist.name if point.dist else point.name
            entries[point.name] = RuntimeEntry(point.name, point.value, (), requirement)
        return cls(entries)

    @property
    def names(self) -> list[str]:
        return sorted(self._entries)

    def __call__(self, request: LoadRequest) -> Loader:
        return DeferredLoader(self.choose(request), request)

    def choose(self, request: LoadRequest) -> RuntimeEntry:
        """The runtime for ``request``'s version; raises ``ModelConfigError`` when none fits."""
        named = request.spec.runtime
        if named is not None:
            entry = self._entries.get(named)
            if entry is None:
                raise ModelConfigError(
                    f"model.yaml: runtime: unknown runtime {named!r}; known: "
                    f"{', '.join(self.names)}"
                )
            return entry
        present = {path.name for path in request.path.iterdir()} if request.path.is_dir() else set()
        for entry in self._entries.values():
            if present.intersection(entry.artifacts):
                return entry
        known = ", ".join(a for e in self._entries.values() for a in e.artifacts)
        raise ModelConfigError(
            f"no model artifact in {request.path} (expected one of: {known}), "
            f"and model.yaml names no runtime"
        )


def import_loader_class(entry: RuntimeEntry) -> LoaderClass:
    """Import the runtime's loader class; a missing framework names what to install."""
    module_name, _, class_name = entry.target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ModelConfigError(
            f"runtime {entry.name!r} is not installed ({exc.name} is missing); "
            f"install it with: pip install '{entry.requirement}'"
        ) from exc
    loader_class = getattr(module, class_name, None)
    if loader_class is None:
        raise ModelConfigError(f"runtime {entry.name!r}: {module_name} has no {class_name}")
    result: LoaderClass = loader_class
    return result


@dataclass(frozen=True, slots=True)
class DeferredLoader:
    """Imports the runtime and builds its loader when ``load()`` runs (on a load thread)."""

    entry: RuntimeEntry
    request: LoadRequest

    def load(self) -> Predictor:
        return import_loader_class(self.entry)(self.request).load()
