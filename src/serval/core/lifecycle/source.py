"""The source: says which models and versions exist in a model repository folder.

Layout (Triton / TF Serving)::

    MODEL_REPOSITORY/<model-name>/model.yaml            optional
    MODEL_REPOSITORY/<model-name>/<version>/<artifact>  version is a positive integer

A composite model (``pipeline``, ``cascade`` or ``ensemble`` in its model.yaml) has no version
folders: it is one virtual version 1 whose fingerprint is model.yaml's.

Mistakes in ``model.yaml`` and in the layout (``layout``) are logged as warnings once each, when
they appear or change: a scan runs every poll interval, and the log is read by people.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

import yaml

from serval.core.errors import ModelConfigError
from serval.core.lifecycle.layout import (
    SPEC_FILE,
    model_folder_problems,
    parse_version,
    repository_problems,
)
from serval.core.model_spec import RELOAD_FREE_SECTIONS, ModelSpec
from serval.core.specs.traffic import TrafficSpec

logger = logging.getLogger(__name__)

# The one version of a composite model (a pipeline, cascade or ensemble): it has no folder.
COMPOSITE_VERSION = 1
_REPOSITORY = ""  # the key of repository-wide problems (no model is named "")
_MAX_NAME_CHARS = 255  # the usual file name limit (NAME_MAX)


@dataclass(frozen=True, slots=True)
class VersionSource:
    """One version folder; ``fingerprint`` changes whenever a file in it (or model.yaml) does."""

    version: int
    path: Path
    fingerprint: str


@dataclass(frozen=True, slots=True)
class ModelSource:
    """One model folder as found on disk. Exactly one of ``spec`` and ``config_error`` is set;
    ``problems`` are layout mistakes that do not stop the model (see ``layout``)."""

    name: str
    path: Path
    spec: ModelSpec | None
    config_error: str | None = None
    versions: dict[int, VersionSource] = field(default_factory=dict)
    problems: tuple[str, ...] = ()
    spec_file: Path | None = None  # model.yaml's path when the model has one
    # Versions the repository holds but cannot offer yet (an object store's upload that is
    # not complete), each with the reason: not in ``versions``, so the version policy keeps
    # serving the others, and the repository index says why.
    withheld: dict[int, str] = field(default_factory=dict)


class Source(Protocol):
    """Where the manager learns which models and versions exist."""

    def scan(self) -> dict[str, ModelSource]: ...

    def scan_model(self, name: str) -> ModelSource | None: ...


class FileSystemSource:
    """Reads a model repository folder. Cheap enough to call every poll interval: it stats
    files and reads only the small model.yaml files."""

    def __init__(self, root: Path) -> None:
        self.root = root
        # What was logged last for each model (and the repository): scans run in executor
        # threads, an index request's beside the poll's.
        self._reported: dict[str, frozenset[str]] = {}
        self._reported_lock = threading.Lock()
        # Each model's traffic section as last accepted (under the same lock): a version it
        # names may lose its folder later (its share goes to the others), but a new or changed
        # section must name only versions served now.
        self._accepted_traffic: dict[str, TrafficSpec] = {}

    def scan(self) -> dict[str, ModelSource]:
        if not self.root.is_dir():
            self._report(_REPOSITORY, [f"the model repository {self.root} is not a folder"])
            return {}
        repository = repository_problems(self.root)
        self._report(_REPOSITORY, repository)
        models = {}
        for entry in sorted(self.root.iterdir()):
            if entry.is_dir() and not entry.name.startswith("."):
                model = self._read_model(entry)
                if repository and parse_version(model.name) is not None:
                    model = replace(model, problems=())  # the repository's warning says it
                models[model.name] = model
                self._report(model.name, _loggable(model))
        self._forget_all_but({*models, _REPOSITORY})
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
        if not is_model:
            return None
        model = self._read_model(path)
        self._report(name, _loggable(model))
        return model

    def _report(self, key: str, problems: Iterable[str]) -> None:
        """Log each problem that was not logged for ``key`` by the previous scan."""
        current = frozenset(problems)
        with self._reported_lock:
            new = current - self._reported.get(key, frozenset())
            self._reported[key] = current
        for problem in sorted(new):
            logger.warning("%s", problem)

    def _forget_all_but(self, keys: set[str]) -> None:
        """Forget models that are gone: a mistake in one that comes back is logged again."""
        with self._reported_lock:
            for key in set(self._reported) - keys:
                del self._reported[key]
            for key in set(self._accepted_traffic) - keys:
                del self._accepted_traffic[key]

    def _read_model(self, path: Path) -> ModelSource:
        model = self._read_spec_and_versions(path)
        versions = model.versions if model.spec is not None else _versions(path)
        return replace(model, problems=tuple(model_folder_problems(path, versions, model.spec)))

    def _read_spec_and_versions(self, path: Path) -> ModelSource:
        spec_path = path / SPEC_FILE
        spec_digest = ""
        try:
            if spec_path.is_file():
                text = spec_path.read_text(encoding="utf-8")
                document = yaml.safe_load(text)
                spec_digest = _spec_digest(document)
                spec = ModelSpec.parse(document, source=str(spec_path))
            else:
                spec = ModelSpec()
        except ModelConfigError as exc:
            return ModelSource(path.name, path, None, exc.message)
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            reason = " ".join(str(exc).split())
            if "'\\t'" in reason:
                reason += " (YAML indents with spaces, never tabs)"
            return ModelSource(path.name, path, None, f"{spec_path}: cannot read: {reason}")
        versions = {}
        for child in path.iterdir():
            version = parse_version(child.name)
            if version is not None and child.is_dir():
                fingerprint = _fingerprint(child, spec_digest)
                versions[version] = VersionSource(version, child, fingerprint)
        if spec.composite is not None:
            if versions:
                found = ", ".join(f"{v}/" for v in sorted(versions))
                reason = (
                    f"{spec_path}: {spec.composite}: a composite model has no version folders "
                    f"(found {found}): move its models into model folders of their own"
                )
                return ModelSource(path.name, path, None, reason)
            if path.name in spec.dependencies():
                roles = ", ".join(spec.roles_of(path.name))
                reason = f"{spec_path}: {spec.composite}: {roles} calls the model itself"
                return ModelSource(path.name, path, None, reason)
            # One virtual version, the spec itself: an edit of model.yaml reloads it.
            versions = {COMPOSITE_VERSION: VersionSource(COMPOSITE_VERSION, path, spec_digest)}
        unserved = self._check_traffic(path.name, spec, set(versions))
        if unserved is not None:
            return ModelSource(path.name, path, None, f"{spec_path}: {unserved}")
        found_file = spec_path if spec_digest else None
        return ModelSource(path.name, path, spec, None, versions, spec_file=found_file)

    def _check_traffic(self, name: str, spec: ModelSpec, found: set[int]) -> str | None:
        """Why ``spec``'s traffic section cannot apply (None: it can, and is accepted). A new
        or changed section must name only versions served now; once accepted, a version it
        names that loses its folder is no error (its share goes to the other versions)."""
        traffic = spec.traffic
        with self._reported_lock:
            accepted = self._accepted_traffic.get(name)
        if traffic is None:
            unserved = None
        else:
            unserved = traffic.unserved(spec.policy, found, missing_ok=traffic == accepted)
        with self._reported_lock:
            if traffic is None:
                self._accepted_traffic.pop(name, None)
            elif unserved is None:
                self._accepted_traffic[name] = traffic
        return unserved


def _versions(path: Path) -> set[int]:
    return {
        version
        for child in path.iterdir()
        if (version := parse_version(child.name)) is not None and child.is_dir()
    }


def _loggable(model: ModelSource) -> list[str]:
    problems = list(model.problems)
    if model.config_error is not None:
        problems.append(
            f"{model.config_error}; until it is fixed, model {model.name} keeps its last good "
            f"configuration (if it had one)"
        )
    return problems


def _spec_digest(document: object) -> str:
    """What of model.yaml a version's fingerprint covers: every section but ``traffic`` and
    ``monitoring``, which apply on the next reconcile without reloading a version. Over the
    parsed document, so comments and formatting reload nothing either."""
    if isinstance(document, dict):
        document = {
            key: value for key, value in document.items() if key not in RELOAD_FREE_SECTIONS
        }
    try:
        text = json.dumps(document, sort_keys=True, default=str)
    except TypeError:  # keys of mixed types (1 and "a") do not sort: the file's order then
        text = json.dumps(document, default=str)
    return hashlib.sha1(text.encode()).hexdigest()


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
