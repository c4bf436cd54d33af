"""Where a request's time went inside a servable: what the servable measures, the request
record carries and statistics add up (a module of its own so that none of those import each
other for it)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class InferenceTimings:
    """Where a request's time went inside the servable, in nanoseconds."""

    queue_ns: int = 0
    compute_input_ns: int = 0
    compute_infer_ns: int = 0
    compute_output_ns: int = 0
    batch_size: int = 1
    # time.perf_counter_ns() when the request entered the servable's queue; 0 when unknown.
    queued_at_ns: int = 0
    # Model executions this response accounts for: 1 for a request run on its own; of the
    # requests that shared a batch, one carries 1 and the others 0, so that the counts add up
    # to executions (statistics' execution_count and batch_stats).
    executions: int = 1
    # The prediction cache's part (``core.composition.cache``): CACHE_HIT (answered from it,
    # nothing ran), CACHE_MISS (looked up, computed, stored) or 0 (no cache, or skipped);
    # ``cache_ns`` the time spent looking up (and, on a miss, storing).
    cache: int = 0
    cache_ns: int = 0

    @classmethod
    def of_stages(
        cls, started: int, prepared: int, inferred: int, finished: int, rows: int
    ) -> InferenceTimings:
        """A runtime's call timed at the edges of its stages (``time.perf_counter_ns()``):
        inputs prepared, the model run, outputs converted; ``rows`` its batch size."""
        return cls(
            compute_input_ns=prepared - started,
            compute_infer_ns=inferred - prepared,
            compute_output_ns=finished - inferred,
            batch_size=rows,
        )


CACHE_HIT = 1
CACHE_MISS = 2
