"""What a PyTorch file holds, and whether loading it would unpickle more than tensors.

``torch.jit.load`` reads TorchScript (code and constants, no Python pickle of arbitrary
objects). ``torch.load`` of a ``torch.save`` file unpickles it: serval tries torch's
weights-only unpickler first, which builds nothing but tensors and plain containers.
``torch.export.load`` unpickles some parts of a ``.pt2`` archive without that restriction
(tensors marked ``use_pickle``, sample inputs when the weights-only load fails, opaque objects)
and loads AOTInductor's compiled code: ``unsafe_parts`` names them before anything is loaded.
"""

from __future__ import annotations

import io
import json
import pickle
import zipfile
from enum import Enum
from pathlib import Path, PurePosixPath

import torch

from serval.core.errors import ModelLoadError

# Paths inside a .pt2 archive (torch.export.pt2_archive.constants), below its root folder.
_PT2_MARKER = "archive_format"
_AOTINDUCTOR = "data/aotinductor/"
_CONFIGS = ("data/weights/", "data/constants/")
_UNPICKLED_OBJECTS = ("opaque_obj_", "custom_obj_")


class FileKind(Enum):
    TORCHSCRIPT = "TorchScript"
    EXPORTED = "torch.export program"
    PICKLE = "torch.save pickle"


def file_kind(path: Path) -> FileKind:
    """What ``path`` holds, from the names inside its zip archive (nothing is unpickled)."""
    names = set(archive_names(path))
    if _PT2_MARKER in names or "serialized_exported_program.json" in names:
        return FileKind.EXPORTED
    if "constants.pkl" in names or any(name.startswith("code/") for name in names):
        return FileKind.TORCHSCRIPT
    if "data.pkl" in names:
        return FileKind.PICKLE
    raise ModelLoadError(
        f"{path.name} is not a TorchScript file, torch.export program or torch.save file"
    )


def archive_names(path: Path) -> list[str]:
    """The archive's member names without the root folder every PyTorch archive has."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise ModelLoadError(
            f"{path.name} is not a PyTorch file (PyTorch saves zip archives): {exc}"
        ) from exc
    return [_inner(name) for name in names]


def _inner(name: str) -> str:
    # torch.save, torch.jit.save and torch.export.save put every member under a root folder
    # named after the file; torch.export's older format (2.7) did not.
    parts = PurePosixPath(name).parts
    return str(PurePosixPath(*parts[1:])) if len(parts) > 1 else name


def loads_weights_only(data: bytes | Path) -> bool:
    """Whether torch's weights-only unpickler accepts ``data`` (a ``torch.save`` file)."""
    source = io.BytesIO(data) if isinstance(data, bytes) else data
    try:
        torch.load(source, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError:
        return False
    return True


def unsafe_parts(path: Path) -> list[str]:
    """The parts of the ``.pt2`` archive ``path`` that ``torch.export.load`` would unpickle
    beyond tensors, or run as compiled code; empty when it holds only safe parts."""
    unsafe: list[str] = []
    with zipfile.ZipFile(path) as archive:
        members = {_inner(name): name for name in archive.namelist()}
        pickled: list[str] = []
        for name, member in members.items():
            if name.startswith(_AOTINDUCTOR):
                unsafe.append(f"{name} (AOTInductor compiled code)")
            elif name.endswith(".pt") or name.endswith(".pkl"):
                pickled.append(name)
            elif name.startswith(_CONFIGS) and name.endswith("_config.json"):
                folder = name.rsplit("/", 1)[0]
                config = json.loads(archive.read(member))
                for payload in config.get("config", {}).values():
                    part = f"{folder}/{payload.get('path_name', '')}"
                    if payload.get("path_name", "").startswith(_UNPICKLED_OBJECTS):
                        unsafe.append(f"{part} (a pickled Python object)")
                    elif payload.get("use_pickle"):
                        pickled.append(part)
        for name in pickled:
            if name not in members:
                continue
            if not loads_weights_only(archive.read(members[name])):
                unsafe.append(f"{name} (a pickle holding more than tensors)")
    return sorted(set(unsafe))
