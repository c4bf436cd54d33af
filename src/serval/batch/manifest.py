"""The output folder's ``_manifest.json``: what the job is, and which parts are written.

A part is recorded only after its file is complete and renamed into place, and the manifest
itself is replaced atomically, so after any interruption (Ctrl-C, SIGTERM, a crash) every part
it lists is whole: ``--resume`` skips those and writes the rest again, which gives the same
output as a run that was never interrupted. ``--resume`` refuses a manifest of another job
(another model, version, inputs or mapping): mixing them would not be one job's output.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from serval.batch.errors import BatchOutputError
from serval.batch.sinks import TEMPORARY_SUFFIX

MANIFEST = "_manifest.json"


@dataclass
class Manifest:
    """``job`` describes the job (compared on resume); ``parts``: part file -> its record."""

    folder: Path
    job: dict[str, Any]
    parts: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        return self.folder / MANIFEST

    def done(self, name: str) -> bool:
        return name in self.parts and (self.folder / name).is_file()

    def record(self, name: str, entry: dict[str, Any]) -> None:
        self.parts[name] = entry
        self.save()

    def save(self) -> None:
        temporary = self.path.with_name(MANIFEST + TEMPORARY_SUFFIX)
        temporary.write_text(
            json.dumps({"job": self.job, "parts": self.parts}, indent=1), encoding="utf-8"
        )
        temporary.replace(self.path)


def prepare_output(folder: Path, job: dict[str, Any], *, resume: bool, overwrite: bool) -> Manifest:
    """The manifest to write to: a new one in a new (or emptied) folder, or the one found
    when resuming the same job. Refuses an existing output without --resume or --overwrite."""
    path = folder / MANIFEST
    if folder.exists() and not folder.is_dir():
        raise BatchOutputError(f"--output {folder}: is a file; batch output is a folder of parts")
    existing = folder.is_dir() and any(folder.iterdir())
    if resume and path.is_file():
        found = json.loads(path.read_text(encoding="utf-8"))
        differs = [
            k for k in sorted(set(job) | set(found["job"])) if job.get(k) != found["job"].get(k)
        ]
        if differs:
            raise BatchOutputError(
                f"--resume: {folder} holds the output of another job (it differs in "
                f"{', '.join(differs)}); use --overwrite to start again, or another --output"
            )
        manifest = Manifest(folder, job, dict(found["parts"]))
        _remove_partials(folder)
        return manifest
    if existing and not overwrite and not resume:
        raise BatchOutputError(
            f"--output {folder} exists and is not empty: pass --resume to continue the job that "
            f"wrote it, or --overwrite to replace its parts"
        )
    if existing and resume:
        raise BatchOutputError(
            f"--resume: {folder} has no {MANIFEST}, so it is not the output of a batch job; "
            f"use --overwrite or another --output"
        )
    if existing:  # --overwrite: only what a batch job writes is removed
        _remove_job_files(folder)
    folder.mkdir(parents=True, exist_ok=True)
    manifest = Manifest(folder, job)
    manifest.save()
    return manifest


def _remove_job_files(folder: Path) -> None:
    """The parts a job wrote (those its manifest lists: the Ray engine's have Ray's names),
    any ``part-*`` file and the manifest; other files are left alone."""
    listed: set[str] = set()
    with contextlib.suppress(OSError, ValueError, KeyError):
        listed = set(json.loads((folder / MANIFEST).read_text(encoding="utf-8"))["parts"])
    for entry in folder.iterdir():
        ours = entry.name in listed or entry.name.startswith(("part-", MANIFEST))
        if entry.is_file() and ours:
            entry.unlink()


def _remove_partials(folder: Path) -> None:
    for entry in folder.glob(f"*{TEMPORARY_SUFFIX}"):
        entry.unlink(missing_ok=True)
