"""Traffic policies: the choice of a version, from a request and a snapshot of the versions.

A policy is pure and cheap: it reads the request and the snapshot and returns a ``Choice``; it
never leases (the data plane leases the choice from the manager, which answers the precise
error when the chosen version does not serve). The first policies: the version a request
names, the version a label names, and the highest available version (the default). A/B with
sticky keys, canary, shadow and bandits are further policies with the same signature.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Protocol

from serval.core.errors import InvalidInputError, ModelNotFoundError, ModelNotReadyError
from serval.core.lifecycle.snapshot import VersionSnapshot
from serval.core.types import InferenceRequest


@dataclass(frozen=True, slots=True)
class Choice:
    """The version that answers (``primary``) and the versions that get a copy of the request
    whose answers are recorded but never returned (``shadows``; none yet). A policy that splits
    traffic names what it chose in ``route`` (an arm, a canary step) for the request record."""

    primary: int
    shadows: tuple[int, ...] = ()
    route: str = ""

    _single: ClassVar[dict[int, Choice]] = {}

    @classmethod
    def of(cls, version: int) -> Choice:
        """The plain choice of ``version``, made once per version (no allocation per
        request). Call it only for versions that exist, so the cache stays small."""
        choice = cls._single.get(version)
        if choice is None:
            choice = cls._single[version] = cls(version)
        return choice


class TrafficPolicy(Protocol):
    def choose(self, request: InferenceRequest, snapshot: VersionSnapshot) -> Choice:
        """The version(s) for ``request``; raise ``ModelNotReadyError`` when none can answer."""
        ...


class LatestAvailable:
    """The highest available version: the default policy."""

    __slots__ = ()

    def choose(self, request: InferenceRequest, snapshot: VersionSnapshot) -> Choice:
        versions = snapshot.versions
        if not versions:
            raise ModelNotReadyError(
                f"model {snapshot.name!r} has no available version: {snapshot.unavailable}",
                retry_after_s=1.0,
            )
        choice = Choice._single.get(versions[-1])  # Choice.of, inlined: once per request
        return choice if choice is not None else Choice.of(versions[-1])


class ExplicitVersion:
    """The version the request names (``request.model_version``)."""

    __slots__ = ()

    def choose(self, request: InferenceRequest, snapshot: VersionSnapshot) -> Choice:
        version = parse_version(request.model_version)
        if version is None:
            return LATEST.choose(request, snapshot)
        return Choice.of(version) if version in snapshot.versions else Choice(version)


class LabelledVersion:
    """The version a TF Serving label points at."""

    __slots__ = ("label",)

    def __init__(self, label: str) -> None:
        self.label = label

    def choose(self, request: InferenceRequest, snapshot: VersionSnapshot) -> Choice:
        version = snapshot.labels.get(self.label)
        if version is None:
            raise ModelNotFoundError(f"model {snapshot.name!r} has no version label {self.label!r}")
        return Choice.of(version) if version in snapshot.versions else Choice(version)


LATEST = LatestAvailable()
EXPLICIT = ExplicitVersion()


def parse_version(version: str | int | None) -> int | None:
    """A client-supplied version: empty means "let the server choose"."""
    if version is None or version == "":
        return None
    if isinstance(version, int) and not isinstance(version, bool):
        number = version
    elif isinstance(version, str) and version.isascii() and version.isdigit():  # not '²'
        number = int(version)
    else:
        raise InvalidInputError(f"model version must be a positive integer, received {version!r}")
    if number < 1:
        raise InvalidInputError(f"model version must be a positive integer, received {version!r}")
    return number
