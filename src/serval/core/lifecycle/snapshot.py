"""What a traffic policy chooses from: a model's available versions and labels, now."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class VersionSnapshot:
    """Immutable; the manager builds one per model when its states change and hands the same
    object to every request until the next change, so reading it costs nothing per request.

    ``versions`` are the AVAILABLE versions, ascending; ``labels`` are the model's version
    labels (a label may name a version that is not available: leasing it says why);
    ``unavailable`` says why no version is available (empty when one is)."""

    name: str
    versions: tuple[int, ...]
    labels: Mapping[str, int]
    unavailable: str = ""

    @property
    def latest(self) -> int | None:
        return self.versions[-1] if self.versions else None
