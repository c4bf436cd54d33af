"""Mistakes in a model repository's layout that serving would pass over in silence, each
described with its likely fix: a model file directly in the model folder, a ``v1/`` folder,
``model.yaml`` inside a version folder, a label naming a missing version, a repository path
that is itself a model folder.

Layout (Triton / TF Serving)::

    MODEL_REPOSITORY/<model-name>/model.yaml            optional
    MODEL_REPOSITORY/<model-name>/<version>/<artifact>  version is a positive integer
"""

from __future__ import annotations

import re
from collections.abc import Collection
from pathlib import Path

from serval.core.model_spec import ModelSpec

SPEC_FILE = "model.yaml"

# Folders a person meant as versions: v1, V2, version_3, version-4.
_VERSION_LIKE = re.compile(r"^(?:v|version)[-_]?0*([1-9][0-9]*)$", re.IGNORECASE)


def parse_version(name: str) -> int | None:
    """The version a folder name stands for: a positive integer, else None."""
    if not (name.isascii() and name.isdigit()):  # not '²'
        return None
    version = int(name)
    return version if version > 0 else None


def model_folder_problems(
    folder: Path, versions: Collection[int], spec: ModelSpec | None
) -> list[str]:
    """What is wrong with ``folder`` (a model folder) beyond ``model.yaml`` errors."""
    problems = []
    files, misnamed = [], []
    for child in sorted(folder.iterdir()):
        if child.name.startswith("."):
            continue
        if child.is_file():
            if child.name != SPEC_FILE:
                files.append(child)
            continue
        version = parse_version(child.name)
        if version is not None:
            if (child / SPEC_FILE).is_file():
                problems.append(
                    f"{child / SPEC_FILE} is ignored: model.yaml belongs in the model folder, "
                    f"{folder / SPEC_FILE}"
                )
            continue
        match = _VERSION_LIKE.match(child.name)
        if match is not None or set(child.name) == {"0"}:
            number = match.group(1) if match is not None else "1"
            misnamed.append(child)
            problems.append(
                f"{child}/ is not a version folder: version folders are positive integers: "
                f"rename it to {number}/"
            )
    if not versions:
        problems.append(_no_version(folder, files, misnamed))
    if spec is not None:
        for label, version in sorted(spec.labels.items()):
            if version not in versions:
                found = ", ".join(map(str, sorted(versions))) or "none"
                problems.append(
                    f"{folder / SPEC_FILE}: labels.{label}: version {version} does not exist "
                    f"(version folders found: {found})"
                )
    return problems


def _no_version(folder: Path, files: list[Path], misnamed: list[Path]) -> str:
    message = f"{folder}/ has no version folder, so nothing loads"
    if misnamed:
        return message
    artifacts = [f for f in files if f.name.startswith("model.")] or files
    if artifacts:
        name = artifacts[0].name
        return f"{message}: {name} is directly in the model folder: put it in {folder}/1/"
    return f"{message}: put the model file in a folder named by its version, as {folder}/1/"


def repository_problems(root: Path) -> list[str]:
    """Whether ``root`` looks like a model folder rather than a folder of model folders."""
    clues = [
        child.name + ("/" if child.is_dir() else "")
        for child in sorted(root.iterdir())
        if (child.is_dir() and parse_version(child.name) is not None)
        or (child.is_file() and child.name.startswith("model."))
    ]
    if not clues:
        return []
    return [
        f"the model repository {root} looks like a model folder (it holds {', '.join(clues)}): "
        f"a model repository holds model folders, as REPOSITORY/<model-name>/1/model.onnx; "
        f"serve its parent folder, {root.resolve().parent}, or move the model into a folder "
        f"of its own"
    ]
