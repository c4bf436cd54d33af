"""The source: says which models and versions exist in a model repository folder.

Layout (Triton / TF Serving)::

    MODEL_REPOSITORY/<model-name>/model.yaml            optional
    MODEL_REPOSITORY/<model-name>/<version>/<artifact>  version is a positive integer
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import yaml

from serval.core.errors import ModelConfigError
from serval.core.model_spec import ModelSpec

logger = logging.getLogger(__name__)

SPEC_FILE = "model.yaml"
_MAX_NAME_CHARS = 255  # the usual file name limit (NAME_MAX)


@dataclass(frozen=True, slots=True)
class VersionSource:
    """One version folder; ``fingerprint`` changes whenever a file in it (or model.yaml) does."""

    version: int
    path: Path
    fingerprint: str


@dataclass(frozen=True, slots=True)
class ModelSource:
    """One model folder as found on disk. Exactly one of ``spec`` and ``config_error`` is set."""

    name: str
    path: Path
    spec: ModelSpec | None
    config_error: str | None = None
    versions: dict[int, VersionSource] = field(default_factory=dict)
    spec_file: Path | None = None  # model.yaml's path when the model has one


class Source(Protocol):
    """Where the manager learns which models and versions exist."""

    def scan(self) -> dict[str, ModelSource]: ...

    def scan_model(self, name: str) -> ModelSource | None: ...


class FileSystemSource:
    """Reads a model repository folder. Cheap enough to call every poll interval: it stats
    files and reads only the small model.yaml files."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def scan(self) -> dict[str, ModelSource]:
        if not self.root.is_dir():
            logger.error("model repository %s is not a folder", self.root)
            return {}
        models = {}
        for entry in sorted(self.root.iterdir()):
            if entry.is_dir() and not entry.name.startswith("."):
                model = self._read_model(entry)
                models[model.name] = model
        return models

    def scan_model(self, name: str) -> ModelSource | None:
        """The model folder ``name`` (a client's word: any name that cannot be a folder of the
        repository, too long or with a NUL, is simply not there)."""
        if "/" in name or name.startswith(".") or "\0" in name or len(name) > _MAX_NAME_CHARS:
            return None
        path = self.root / name
        try:
            is_model = path.is_dir()
        except (OSError, ValueError):  # e.g. a name over the file system's limit
            return None
        return self._read_model(path) if is_model else None

    def _read_model(self, path: Path) -> ModelSource:
        spec_path = path / SPEC_FILE
        spec_digest = ""
        try:
            if spec_path.is_file():
                text = spec_path.read_text(encoding="utf-8")
                spec_digest = hashlib.sha1(text.encode()).hexdigest()
                spec = ModelSpec.parse(yaml.safe_load(text), source=str(spec_path))
            else:
                spec = ModelSpec()
        except ModelConfigError as exc:
            return ModelSource(path.name, path, None, exc.message)
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            reason = str(exc).replace("\n", " ")
            return ModelSource(path.name, path, None, f"{spec_path}: cannot read: {reason}")
        versions = {}
        for child in path.iterdir():
            version = _parse_version(child.name)
            if version is not None and child.is_dir():
                fingerprint = _fingerprint(child, spec_digest)
                versions[version] = VersionSource(version, child, fingerprint)
        found_file = spec_path if spec_digest else None
        return ModelSource(path.name, path, spec, None, versions, found_file)


def _parse_version(name: str) -> int | None:
    if not name.isdigit():
        return None
    version = int(name)
    return version if version > 0 else None


def _fingerprint(folder: Path, spec_digest: str) -> str:
    """Names, sizes and modification times of every file below ``folder``."""
    digest = hashlib.sha1(spec_digest.encode())
    for file in sorted(folder.rglob("*")):
        try:
            stat = file.stat()
        except OSError:  # removed while we looked; the next scan sees the final state
            continue
        digest.update(f"{file.relative_to(folder)}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    return digest.hexdigest()
