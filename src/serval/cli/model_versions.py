"""What ``serval convert`` and ``serval optimize`` share: finding a version folder, writing a
new one atomically, sample rows, and comparing two models' outputs."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from serval.core.lifecycle.source import FileSystemSource
from serval.core.model_spec import ModelSpec


class CommandError(Exception):
    """A problem the user can fix; printed without a traceback."""


@dataclass(frozen=True, slots=True)
class SourceVersion:
    model_dir: Path
    version: int
    path: Path
    spec: ModelSpec


def find_version(model_dir: Path, version: int | None) -> SourceVersion:
    """The version folder of ``model_dir`` to read (the highest one unless ``version``)."""
    if not model_dir.is_dir():
        raise CommandError(f"{model_dir} is not a model folder")
    source = FileSystemSource(model_dir.parent).scan_model(model_dir.name)
    if source is None:
        raise CommandError(f"{model_dir} is not a model folder")
    if source.spec is None:
        raise CommandError(source.config_error or f"{model_dir}/model.yaml is not valid")
    if not source.versions:
        raise CommandError(f"{model_dir} has no version folder (1/, 2/, ...)")
    chosen = max(source.versions) if version is None else version
    found = source.versions.get(chosen)
    if found is None:
        known = ", ".join(str(v) for v in sorted(source.versions))
        raise CommandError(f"{model_dir} has no version {chosen} (it has: {known})")
    return SourceVersion(model_dir, chosen, found.path, source.spec)


def next_version(model_dir: Path) -> int:
    numbers = [int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()]
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


def sample_rows(rows_file: Path | None, n_features: int, count: int, seed: int = 0) -> np.ndarray:
    """Rows from a ``.npy`` file, or ``count`` generated standard-normal rows."""
    if rows_file is None:
        return np.random.default_rng(seed).standard_normal((count, n_features))
    try:
        rows = np.load(rows_file, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise CommandError(f"cannot read rows from {rows_file}: {exc}") from exc
    if rows.ndim == 1:
        rows = rows.reshape(1, -1)
    if rows.ndim != 2 or (n_features > 0 and rows.shape[1] != n_features):
        raise CommandError(
            f"{rows_file} holds an array of shape {list(rows.shape)}; expected [rows, {n_features}]"
        )
    if rows.dtype.kind not in "fiub":
        raise CommandError(f"{rows_file} holds {rows.dtype} values; expected numbers")
    result: np.ndarray = rows.astype(np.float64)
    return result


def max_differences(
    expected: Mapping[str, np.ndarray[Any, Any]], actual: Mapping[str, np.ndarray[Any, Any]]
) -> dict[str, float]:
    """Per output, the largest absolute difference; labels that differ count as infinite."""
    differences = {}
    for name, want in expected.items():
        got = actual.get(name)
        if got is None or np.shape(got) != np.shape(want):
            differences[name] = float("inf")
        elif want.dtype.kind in "OSU" or got.dtype.kind in "OSU":
            differences[name] = 0.0 if np.array_equal(want, got) else float("inf")
        elif want.size == 0:
            differences[name] = 0.0
        else:
            delta = np.abs(want.astype(np.float64) - got.astype(np.float64))
            differences[name] = float(np.nanmax(delta))
    return differences


def print_differences(differences: Mapping[str, float], rows: int) -> None:
    print(f"max absolute difference on {rows} rows:")
    width = max((len(name) for name in differences), default=0)
    for name, value in differences.items():
        shown = "labels differ" if value == float("inf") else f"{value:.3g}"
        print(f"  {name.ljust(width)}  {shown}")
