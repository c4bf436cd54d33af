"""Runtime ``native``: an MLflow model's flavor artifact served by serval's own runtime.

``model.yaml`` says ``runtime: native`` for an MLflow model whose flavor serval runs itself;
the flavor's file (named in the ``MLmodel`` file) is handed to that runtime's loader, which
serves it as it serves its own files (inputs, outputs, ``runtime_options``, pickle rules) and
without importing MLflow. A runtime serves a flavor natively once its loader takes the file as
``artifact=`` (``ARTIFACT_RUNTIMES``): PyTorch (``pytorch``) and TensorFlow (``tensorflow``,
``keras``) are listed for the runtimes that will serve them; until their loaders take a
flavor's file, ``runtime: native`` on them is a load error that says so.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from serval.core.errors import ModelConfigError, ModelLoadError
from serval.core.lifecycle.loader import Loader, LoadRequest
from serval.core.servable import Predictor
from serval.runtimes.mlflow.mlmodel import MLmodel, read_mlmodel
from serval.runtimes.registry import BUILTIN_RUNTIMES, import_loader_class


@dataclass(frozen=True, slots=True)
class NativeFlavor:
    runtime: str  # serval's runtime for the flavor's file
    file_key: str  # the flavor's key that names the file


# In order of preference, when an MLmodel has several.
NATIVE_FLAVORS: Mapping[str, NativeFlavor] = {
    "onnx": NativeFlavor("onnx", "data"),
    "sklearn": NativeFlavor("sklearn", "pickled_model"),
    "xgboost": NativeFlavor("xgboost", "data"),
    "lightgbm": NativeFlavor("lightgbm", "data"),
    "pytorch": NativeFlavor("torch", "model_data"),
    "tensorflow": NativeFlavor("tensorflow", "saved_model_dir"),
    "keras": NativeFlavor("tensorflow", "data"),
}


# The runtimes whose loaders take a file to load (``artifact=``) in place of the version's.
ARTIFACT_RUNTIMES = frozenset({"onnx", "sklearn", "xgboost", "lightgbm"})


class ArtifactLoaderClass(Protocol):
    def __call__(self, request: LoadRequest, *, artifact: Path | None = None) -> Loader: ...


class NativeLoader:
    def __init__(self, request: LoadRequest) -> None:
        self._request = request

    def load(self) -> Predictor:
        mlmodel = read_mlmodel(self._request.path)
        flavor_name, native = choose_flavor(mlmodel)
        flavor = mlmodel.flavors[flavor_name]
        artifact = _artifact(mlmodel, flavor_name, flavor, native)
        runtime = _runtime(flavor_name, flavor, native, artifact)
        entry = next((e for e in BUILTIN_RUNTIMES if e.name == runtime), None)
        if entry is None or runtime not in ARTIFACT_RUNTIMES:
            raise ModelConfigError(
                f"runtime: native: serval's {runtime!r} runtime does not serve an MLmodel's "
                f"{flavor_name} flavor file yet; remove runtime: native to serve it through "
                f"MLflow"
            )
        loader_class: ArtifactLoaderClass = import_loader_class(entry)  # type: ignore[assignment]
        return loader_class(self._request, artifact=artifact).load()


def choose_flavor(mlmodel: MLmodel) -> tuple[str, NativeFlavor]:
    """The first flavor of the model that serval runs natively."""
    for name, native in NATIVE_FLAVORS.items():
        if mlmodel.flavor(name) is not None:
            return name, native
    raise ModelConfigError(
        f"runtime: native: {mlmodel.path} has no flavor serval runs natively (it has: "
        f"{', '.join(mlmodel.flavors)}; native: {', '.join(NATIVE_FLAVORS)}); remove "
        f"runtime: native to serve it through its python_function flavor"
    )


def _artifact(
    mlmodel: MLmodel, flavor_name: str, flavor: Mapping[str, Any], native: NativeFlavor
) -> Path:
    relative = flavor.get(native.file_key)
    if not isinstance(relative, str) or not relative:
        raise ModelLoadError(
            f"{mlmodel.path}: the {flavor_name} flavor names no file ({native.file_key})"
        )
    path = (mlmodel.folder / relative).resolve()
    if not path.is_relative_to(mlmodel.folder.resolve()):
        raise ModelLoadError(f"{mlmodel.path}: {native.file_key} points outside the model folder")
    if not path.exists():
        raise ModelLoadError(f"{mlmodel.path}: the {flavor_name} flavor's {relative} is missing")
    return path


def _runtime(
    flavor_name: str, flavor: Mapping[str, Any], native: NativeFlavor, artifact: Path
) -> str:
    # mlflow.lightgbm saves a scikit-learn-API model (LGBMClassifier...) as skops or a
    # pickle, and only a Booster as LightGBM's own text format.
    if flavor_name == "lightgbm" and artifact.suffix in (".skops", ".pkl"):
        return "sklearn"
    return native.runtime
