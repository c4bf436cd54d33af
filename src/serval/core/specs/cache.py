"""``cache`` in ``model.yaml``: answers kept per version and returned for an identical request
without running the model (docs/caching.md).

``cache: {backend: memory, ttl_s: 300, max_entries: 100000}``: a bounded LRU in the server's
memory, one per loaded version. ``backend: redis`` keeps them in the server's ``--redis-url``,
shared by every replica, each entry expiring after ``ttl_s``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from serval.core.specs.strict import StrictSection

MAX_CACHE_ENTRIES = 100_000_000


class CacheSpec(StrictSection):
    """Where a model's answers are cached and for how long."""

    backend: Literal["memory", "redis"] = Field(
        default="memory",
        description="memory: an LRU per loaded version in this process; redis: the server's "
        "--redis-url, shared by replicas.",
    )
    ttl_s: float = Field(
        default=300.0,
        gt=0,
        le=365 * 86400,
        description="Seconds an answer is served from the cache after it was computed.",
    )
    max_entries: int = Field(
        default=100_000,
        ge=1,
        le=MAX_CACHE_ENTRIES,
        description="memory: the answers kept per version; the least recently used go first.",
    )
    inputs: tuple[str, ...] | None = Field(
        default=None,
        min_length=1,
        max_length=256,
        description="The inputs the cache key covers (default: every input). Leave out only "
        "inputs that cannot change the answer (a request id passed to a Python model).",
    )

    @field_validator("inputs")
    @classmethod
    def _each_once(cls, inputs: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if inputs is not None and len(set(inputs)) != len(inputs):
            raise ValueError("each input is named once")
        return inputs
