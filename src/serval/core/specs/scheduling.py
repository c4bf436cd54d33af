"""How a model's requests are run: its warm-up at load, its queue (dynamic batching) and its
share of the shared inference threads (concurrency)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from serval.core.specs.strict import StrictSection

# The most rows a warm-up request may ask the server to allocate.
MAX_WARMUP_BATCH_SIZE = 1024


class WarmupSpec(StrictSection):
    """Requests run at load time, before the version takes traffic."""

    enabled: bool = True
    batch_size: int = Field(
        default=1,
        ge=1,
        le=MAX_WARMUP_BATCH_SIZE,
        description=f"Rows in each warm-up request (at most {MAX_WARMUP_BATCH_SIZE}).",
    )
    iterations: int = Field(default=1, ge=0, le=1000)


class DynamicBatchingSpec(StrictSection):
    """How requests wait in the model's queue and merge into batches (docs/batching.md)."""

    mode: Literal["fixed", "adaptive"] = Field(
        default="fixed",
        description="fixed: batches follow max_queue_delay_us and preferred_batch_sizes. "
        "adaptive: serval learns the model's batch cost and picks the batch size and the wait "
        "to keep queue wait + execution under latency_slo_ms, refusing requests (REST 429, "
        "gRPC RESOURCE_EXHAUSTED) that would miss it. Adaptive needs max_batch_size > 0.",
    )
    latency_slo_ms: float | None = Field(
        default=None,
        gt=0,
        le=600_000,
        description="Adaptive mode's target, in milliseconds, for a request's queue wait + "
        "execution. Required with mode: adaptive, refused otherwise.",
    )
    max_queue_delay_us: int = Field(
        default=0,
        ge=0,
        le=10_000_000,
        description="Microseconds a batch may wait for more requests, counted from its first "
        "request; only while an instance is busy and the batch is below a preferred or the "
        "maximum size. Needs max_batch_size > 0.",
    )
    preferred_batch_sizes: tuple[int, ...] = Field(
        default=(),
        max_length=64,
        description="Batch sizes (rows) that are sent at once when reached, without waiting "
        "for max_queue_delay_us. Each at most max_batch_size.",
    )
    max_queue_size: int = Field(
        default=0,
        ge=0,
        le=10_000_000,
        description="Requests that may wait; one more is refused as overloaded (REST 429, gRPC "
        "RESOURCE_EXHAUSTED). 0: no bound.",
    )
    priority_levels: int = Field(
        default=0,
        ge=0,
        le=100,
        description="Priority levels 1 (highest) to N that the request parameter 'priority' "
        "selects; 0: priorities are ignored and requests run in arrival order.",
    )
    default_priority_level: int = Field(
        default=0,
        ge=0,
        description="Level of a request without priority (or priority 0); 0 means the lowest "
        "level, priority_levels.",
    )

    @field_validator("preferred_batch_sizes")
    @classmethod
    def _sizes_valid(cls, sizes: tuple[int, ...]) -> tuple[int, ...]:
        if any(size < 1 for size in sizes):
            raise ValueError("batch sizes are positive integers")
        return tuple(sorted(set(sizes)))

    @model_validator(mode="after")
    def _default_level_exists(self) -> DynamicBatchingSpec:
        if self.default_priority_level > self.priority_levels:
            raise ValueError(
                f"default_priority_level {self.default_priority_level} is above "
                f"priority_levels {self.priority_levels}"
            )
        return self

    @model_validator(mode="after")
    def _mode_fits(self) -> DynamicBatchingSpec:
        if self.mode == "fixed" and self.latency_slo_ms is not None:
            raise ValueError("latency_slo_ms needs mode: adaptive")
        if self.mode == "adaptive":
            if self.latency_slo_ms is None:
                raise ValueError("mode: adaptive needs latency_slo_ms")
            if self.max_queue_delay_us or self.preferred_batch_sizes:
                raise ValueError(
                    "mode: adaptive picks the wait and the batch sizes itself; remove "
                    "max_queue_delay_us and preferred_batch_sizes"
                )
        return self


class ConcurrencySpec(StrictSection):
    """How much of the server's shared inference threads a model without a queue may use
    (docs/lifecycle.md#one-model-cannot-stall-the-others)."""

    limit: int | None = Field(
        default=None,
        ge=1,
        le=256,
        description="Requests of this model that may run at once on the shared inference "
        "threads. Default, and the most: one less than the server's inference threads "
        "(at least 1), so that a hung model always leaves a thread to the others.",
    )
    max_waiting: int = Field(
        default=10_000,
        ge=0,
        le=1_000_000,
        description="Requests that may wait for one of those (holding no thread); one more "
        "is refused as overloaded (REST 429, gRPC RESOURCE_EXHAUSTED, with Retry-After).",
    )
