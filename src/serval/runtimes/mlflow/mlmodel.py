"""The ``MLmodel`` file: its flavors and signature, read without importing MLflow."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from serval.core.errors import ModelLoadError

MLMODEL = "MLmodel"
PYFUNC = "python_function"


@dataclass(frozen=True, slots=True)
class MLmodel:
    """What serval reads from an ``MLmodel`` file."""

    path: Path
    flavors: Mapping[str, Mapping[str, Any]]
    # The signature's parts, decoded from the JSON strings MLflow stores; None when absent.
    inputs: list[dict[str, Any]] | None
    outputs: list[dict[str, Any]] | None
    params: list[dict[str, Any]] | None

    @property
    def folder(self) -> Path:
        return self.path.parent

    def flavor(self, name: str) -> Mapping[str, Any] | None:
        return self.flavors.get(name)


def read_mlmodel(folder: Path) -> MLmodel:
    """Parse ``folder/MLmodel``; ``ModelLoadError`` when it is missing or malformed."""
    path = folder / MLMODEL
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelLoadError(f"no {MLMODEL} file in {folder}") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ModelLoadError(f"{path} is not a readable MLmodel file: {exc}") from exc
    if not isinstance(document, dict):
        raise ModelLoadError(f"{path} is not an MLmodel file (a YAML mapping)")
    flavors = document.get("flavors")
    if not isinstance(flavors, dict) or not flavors:
        raise ModelLoadError(f"{path} names no flavors")
    signature = document.get("signature") or {}
    if not isinstance(signature, dict):
        raise ModelLoadError(f"{path}: signature is not a mapping")
    return MLmodel(
        path=path,
        flavors={str(k): dict(v or {}) for k, v in flavors.items()},
        inputs=_schema(signature, "inputs", path),
        outputs=_schema(signature, "outputs", path),
        params=_schema(signature, "params", path),
    )


def _schema(signature: Mapping[str, Any], key: str, path: Path) -> list[dict[str, Any]] | None:
    raw = signature.get(key)
    if raw is None:
        return None
    try:
        decoded = json.loads(raw) if isinstance(raw, str) else raw
    except json.JSONDecodeError as exc:
        raise ModelLoadError(f"{path}: signature {key} is not JSON: {exc}") from exc
    if not isinstance(decoded, list) or not all(isinstance(item, dict) for item in decoded):
        raise ModelLoadError(f"{path}: signature {key} is not a list of specs")
    return decoded
