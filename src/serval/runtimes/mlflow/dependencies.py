"""A logged model's dependencies: serval installs none, and names what is missing."""

from __future__ import annotations

import re
from pathlib import Path

from serval.core.errors import ModelLoadError

# Module -> (distribution, serval extra that installs it, or None).
_KNOWN: dict[str, tuple[str, str | None]] = {
    "sklearn": ("scikit-learn", "sklearn"),
    "skops": ("skops", "sklearn"),
    "xgboost": ("xgboost", "xgboost"),
    "lightgbm": ("lightgbm", "lightgbm"),
    "onnxruntime": ("onnxruntime", "onnx"),
    "onnx": ("onnx", "onnx"),
    "torch": ("torch", "torch"),
    "tensorflow": ("tensorflow", "tensorflow"),
    "keras": ("keras", "tensorflow"),
    "pandas": ("pandas", "mlflow"),
}


def missing_module(exc: BaseException) -> str | None:
    """The top-level module whose import failed, when ``exc`` (or what caused it) says so:
    MLflow wraps some import errors in its own exception, keeping only the message."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ModuleNotFoundError) and seen.name:
            return seen.name.split(".")[0]
        match = re.search(r"No module named '([^']+)'", str(seen))
        if match:
            return match.group(1).split(".")[0]
        seen = seen.__cause__ or seen.__context__
    return None


def missing_dependency(module: str, folder: Path) -> ModelLoadError:
    """The load error for a module the model imports and this environment lacks."""
    distribution, extra = _KNOWN.get(module, (module, None))
    pinned = _requirement(folder, distribution)
    install = f"pip install '{pinned or distribution}'"
    if extra is not None:
        install = f"pip install 'serval-server[{extra}]' (or {install})"
    return ModelLoadError(
        f"the MLflow model in {folder} needs the package {distribution!r} (it imports "
        f"{module!r}), which is not installed; serval does not install a model's dependencies"
        f" (its requirements.txt lists them): {install}"
    )


def _requirement(folder: Path, distribution: str) -> str | None:
    """The line of the model's ``requirements.txt`` that names ``distribution``, if any."""
    path = folder / "requirements.txt"
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return None
    wanted = _normalize(distribution)
    for line in lines:
        match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", line)
        if match and _normalize(match.group(1)) == wanted:
            return line.strip()
    return None


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()
