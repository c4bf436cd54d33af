"""The settings of a model's queue and instances, from its ``model.yaml``.

A module of its own so that the scheduling rule and the servable share them without importing
each other.
"""

from __future__ import annotations

from dataclasses import dataclass

from serval.core.model_spec import ModelSpec
from serval.core.specs.scheduling import DynamicBatchingSpec


@dataclass(frozen=True, slots=True)
class BatchingOptions:
    max_batch_size: int = 0  # rows; 0: each request runs alone
    instances: int = 1
    max_queue_delay_s: float = 0.0
    preferred_batch_sizes: tuple[int, ...] = ()
    max_queue_size: int = 0  # 0: no bound
    priority_levels: int = 0  # 0: arrival order only
    default_priority_level: int = 0  # 0: the lowest level
    latency_slo_s: float = 0.0  # above 0: adaptive mode, with this latency target

    @classmethod
    def from_spec(cls, spec: ModelSpec) -> BatchingOptions:
        queue = spec.dynamic_batching or DynamicBatchingSpec()
        return cls(
            max_batch_size=spec.max_batch_size,
            instances=spec.instances or 1,
            max_queue_delay_s=queue.max_queue_delay_us / 1e6,
            preferred_batch_sizes=queue.preferred_batch_sizes,
            max_queue_size=queue.max_queue_size,
            priority_levels=queue.priority_levels,
            default_priority_level=queue.default_priority_level,
            latency_slo_s=(queue.latency_slo_ms or 0.0) / 1e3 if queue.mode == "adaptive" else 0.0,
        )
