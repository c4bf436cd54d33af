"""The ``traffic`` section of ``model.yaml``: how requests that name no version are spread
over the model's versions (docs/rollout.md).

Exactly one of ``routes``, ``canary`` and ``bandit`` chooses the version that answers;
``shadow`` adds copies of requests to other versions and combines with any of them (alone,
the highest available version answers). Versions are written as strings, as YAML keys are
(``"1"``), and must be positive integers; whether the model serves them is checked against
its ``version_policy`` where the version folders are known (``unserved``).
"""

from __future__ import annotations

import itertools
from collections.abc import Collection, Iterable, Mapping
from typing import Annotated, Any, Literal, Protocol

from pydantic import BeforeValidator, Field, field_validator, model_validator

from serval.core.specs.strict import StrictSection

MAX_VERSIONS = 64  # versions one policy may name
MAX_STEPS = 100


class SelectsVersions(Protocol):
    """A version policy (``core.lifecycle.version_policy``): which versions it serves."""

    def select(self, available: Iterable[int]) -> set[int]: ...


def _version(text: object) -> int:
    """A version as model.yaml writes it ("2", or 2): a positive integer."""
    if isinstance(text, bool):
        raise ValueError(f"version must be a positive integer, received {text!r}")
    if isinstance(text, int):
        number = text
    elif isinstance(text, str) and text.isascii() and text.isdigit():
        number = int(text)
    else:
        raise ValueError(f"version must be a positive integer, received {text!r}")
    if number < 1:
        raise ValueError(f"version must be a positive integer, received {text!r}")
    return number


def _distinct_versions(versions: object) -> object:
    """A list of versions, each a positive integer (as a string), none named twice."""
    if isinstance(versions, list | tuple):
        numbers = [_version(v) for v in versions]
        if len(set(numbers)) != len(numbers):
            raise ValueError("versions must differ")
        return tuple(str(n) for n in numbers)
    return versions  # not a list: pydantic says so


# A policy's list of versions (shadows, bandit arms), as model.yaml writes them.
VersionList = Annotated[tuple[str, ...], BeforeValidator(_distinct_versions)]


class StickySpec(StrictSection):
    """Where the sticky key of a request is: exactly one of ``header`` and ``parameter``."""

    header: str | None = Field(
        default=None,
        min_length=1,
        max_length=256,
        pattern=r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$",
        description="Request header (REST) or metadata key (gRPC) holding the key, e.g. "
        "x-user-id; matched without regard to case.",
    )
    parameter: str | None = Field(
        default=None,
        min_length=1,
        max_length=256,
        description="Request parameter holding the key (V2 'parameters', e.g. user_id).",
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> StickySpec:
        if (self.header is None) == (self.parameter is None):
            raise ValueError("sticky needs exactly one of header and parameter")
        return self


class ShadowSpec(StrictSection):
    """Copies of requests sent to other versions; their answers are compared with the
    primary's and never returned."""

    versions: VersionList = Field(
        min_length=1,
        max_length=MAX_VERSIONS,
        description='Versions that get a copy, e.g. ["3"].',
    )
    sample: float = Field(
        default=1.0, ge=0.0, le=1.0, description="Share of requests copied, 0 to 1."
    )

    @property
    def version_numbers(self) -> tuple[int, ...]:
        return tuple(int(v) for v in self.versions)


class GuardrailsSpec(StrictSection):
    """Limits the canary version must keep over each step; a breach rolls back at once."""

    max_error_rate: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="Highest share of the canary's requests in a step that may fail with a "
        "server error (client mistakes, 4xx, are not counted).",
    )
    max_p99_ms: float | None = Field(
        default=None,
        gt=0.0,
        description="Highest 99th percentile of the canary's latency in a step, milliseconds.",
    )
    min_requests: int = Field(
        default=50,
        ge=1,
        le=1_000_000,
        description="Canary requests a step needs before its guardrails are evaluated.",
    )
    rollback_on_alert: bool = Field(
        default=False,
        description="Roll back when continuous evaluation raises an alert (quality or drift) "
        "on the canary version (model.yaml `monitoring`, docs/evaluation.md).",
    )


class CanarySpec(StrictSection):
    """A new version ramped up step by step while its guardrails hold; the rest of the traffic
    goes to the stable version (the highest served version other than the canary)."""

    version: str = Field(description='The canary version, e.g. "2".')
    steps: tuple[float, ...] = Field(
        default=(5.0, 25.0, 50.0, 100.0),
        min_length=1,
        max_length=MAX_STEPS,
        description="Percent of traffic the canary gets, one step after another; after the "
        "last step it is promoted (all traffic).",
    )
    step_s: float = Field(
        default=300.0,
        gt=0.0,
        le=30 * 86400,
        description="Seconds each step lasts (wall clock from when the policy was set).",
    )
    guardrails: GuardrailsSpec = Field(
        default_factory=GuardrailsSpec, description="Limits that roll the canary back."
    )

    @field_validator("version", mode="before")
    @classmethod
    def _version_valid(cls, version: object) -> str:
        return str(_version(version))

    @field_validator("steps")
    @classmethod
    def _steps_valid(cls, steps: tuple[float, ...]) -> tuple[float, ...]:
        if any(not 0.0 <= step <= 100.0 for step in steps):
            raise ValueError("steps are percentages from 0 to 100")
        if any(later < earlier for earlier, later in itertools.pairwise(steps)):
            raise ValueError("steps must not decrease")
        return steps

    @property
    def version_number(self) -> int:
        return int(self.version)


class BanditSpec(StrictSection):
    """A multi-armed bandit: each request goes to a version chosen by the algorithm from the
    rewards received through the feedback API."""

    versions: VersionList = Field(
        min_length=2, max_length=MAX_VERSIONS, description='The arms, e.g. ["1", "2"].'
    )
    algorithm: Literal["thompson", "epsilon_greedy", "ucb1"] = Field(
        default="thompson",
        description="thompson: Thompson sampling over Beta posteriors (rewards in [0, 1]); "
        "epsilon_greedy: the best mean reward, a random arm with probability epsilon; ucb1: "
        "the best upper confidence bound.",
    )
    epsilon: float = Field(
        default=0.1, ge=0.0, le=1.0, description="epsilon_greedy's share of random choices."
    )

    @property
    def version_numbers(self) -> tuple[int, ...]:
        return tuple(int(v) for v in self.versions)


class TrafficSpec(StrictSection):
    """How requests that name no version are routed: exactly one of routes, canary and
    bandit; shadow with any of them, or alone."""

    routes: dict[str, float] | None = Field(
        default=None,
        description='Weights per version, e.g. {"1": 90, "2": 10}; normalised, so they need '
        "not add up to 100. A/B tests and fixed canaries.",
    )
    sticky: StickySpec | None = Field(
        default=None,
        description="Same key, same version: a hash of (model, key) onto the weights of routes "
        "or canary, identical on every replica and after a restart. Without it, requests are "
        "spread at random by weight.",
    )
    shadow: ShadowSpec | None = Field(
        default=None, description="Copies of requests to other versions, compared, not returned."
    )
    canary: CanarySpec | None = Field(
        default=None, description="A version ramped up step by step, with guardrails."
    )
    bandit: BanditSpec | None = Field(
        default=None, description="A multi-armed bandit learning from feedback rewards."
    )

    @field_validator("routes", mode="before")
    @classmethod
    def _routes_keys(cls, routes: object) -> object:
        if isinstance(routes, Mapping):
            return {str(key): weight for key, weight in routes.items()}
        return routes

    @field_validator("routes")
    @classmethod
    def _routes_valid(cls, routes: dict[str, float] | None) -> dict[str, float] | None:
        if routes is None:
            return None
        if not routes:
            raise ValueError("routes needs at least one version")
        if len(routes) > MAX_VERSIONS:
            raise ValueError(f"at most {MAX_VERSIONS} routes")
        normal: dict[str, float] = {}
        for key, weight in routes.items():
            try:
                version = _version(key)
            except ValueError as exc:
                raise ValueError(f"route {key!r}: {exc}") from None
            if not weight >= 0.0 or weight == float("inf"):
                raise ValueError(f"route {key!r}: weight must be a number >= 0")
            normal[str(version)] = weight
        if not sum(normal.values()) > 0.0:
            raise ValueError("routes need a weight above 0")
        return normal

    @model_validator(mode="after")
    def _one_chooser(self) -> TrafficSpec:
        choosers = [n for n in ("routes", "canary", "bandit") if getattr(self, n) is not None]
        if len(choosers) > 1:
            raise ValueError(f"give one of routes, canary and bandit, not {' and '.join(choosers)}")
        if self.sticky is not None and self.routes is None and self.canary is None:
            raise ValueError("sticky applies to routes or canary")
        if not choosers and self.shadow is None:
            raise ValueError("traffic needs routes, canary, bandit or shadow")
        return self

    @property
    def route_weights(self) -> dict[int, float]:
        return {int(v): w for v, w in (self.routes or {}).items()}

    def named_versions(self) -> list[tuple[str, int]]:
        """(field, version) for each version the policy names, the field as an error says it."""
        named: list[tuple[str, int]] = [(f"routes.{v}", int(v)) for v in self.routes or {}]
        if self.canary is not None:
            named.append(("canary.version", self.canary.version_number))
        if self.bandit is not None:
            arms = self.bandit.version_numbers
            named += [(f"bandit.versions.{i}", v) for i, v in enumerate(arms)]
        if self.shadow is not None:
            shadows = self.shadow.version_numbers
            named += [(f"shadow.versions.{i}", v) for i, v in enumerate(shadows)]
        return named

    def unserved(
        self, policy: SelectsVersions, found: Collection[int], *, missing_ok: bool
    ) -> str | None:
        """Why the policy cannot apply to a model whose version ``policy`` serves from the
        version folders ``found``: the first version it names that is not served, with the
        field; None when every one is. ``missing_ok`` (a section accepted before): a version
        whose folder is missing counts as served if the version policy would serve it, so that
        a version that went away after the policy was set is no error (its share goes to the
        others); without it (a new or changed section, the API), only versions served now
        count."""
        served = policy.select(found)
        for field, version in self.named_versions():
            if version in served:
                continue
            if missing_ok and version not in found and version in policy.select({*found, version}):
                continue
            serves = ", ".join(str(v) for v in sorted(served)) or "no version"
            return (
                f"traffic.{field}: version {version} is not served (version_policy serves {serves})"
            )
        if self.canary is not None:
            canary = self.canary.version_number
            if not policy.select({*found, canary}) - {canary}:
                return (
                    f"traffic.canary.version: a canary needs a stable version beside it (version "
                    f"{canary}; version_policy serves no other)"
                )
        return None

    def as_json(self) -> dict[str, Any]:
        """The policy as model.yaml would hold it (unset fields left out)."""
        return self.model_dump(mode="json", exclude_none=True)
