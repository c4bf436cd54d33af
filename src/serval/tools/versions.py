"""Version folders for the tools: the one to read, and the next one, written atomically."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from serval.core.errors import ToolError
from serval.core.lifecycle.source import FileSystemSource
from serval.core.model_spec import ModelSpec


@dataclass(frozen=True, slots=True)
class SourceVersion:
    model_dir: Path
    version: int
    path: Path
    spec: ModelSpec


def find_version(model_dir: Path, version: int | None) -> SourceVersion:
    """The version folder of ``model_dir`` to read (the highest one unless ``version``)."""
    if not model_dir.is_dir():
        raise ToolError(f"{model_dir} is not a model folder")
    source = FileSystemSource(model_dir.parent).scan_model(model_dir.name)
    if source is None:
        raise ToolError(f"{model_dir} is not a model folder")
    if source.spec is None:
        raise ToolError(source.config_error or f"{model_dir}/model.yaml is not valid")
    if not source.versions:
        raise ToolError(f"{model_dir} has no version folder (1/, 2/, ...)")
    chosen = max(source.versions) if version is None else version
    found = source.versions.get(chosen)
    if found is None:
        known = ", ".join(str(v) for v in sorted(source.versions))
        raise ToolError(f"{model_dir} has no version {chosen} (it has: {known})")
    return SourceVersion(model_dir, chosen, found.path, source.spec)


def next_version(model_dir: Path) -> int:
    numbers = [
        int(p.name)
        for p in model_dir.iterdir()
        if p.is_dir() and p.name.isascii() and p.name.isdigit()
    ]
    return max(numbers, default=0) + 1


def write_version(model_dir: Path, files: Mapping[str, bytes]) -> Path:
    """Write ``files`` as the next version of ``model_dir``: into a hidden folder first, then
    renamed, so that a polling server never sees a half-written version."""
    model_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".serval-new-", dir=model_dir))
    try:
        for name, content in files.items():
            (staging / name).write_bytes(content)
        target = model_dir / str(next_version(model_dir))
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target
