"""torch's intra-op thread count: one value for the whole process, sized against serval's own
threads.

Each call of a model runs on one of serval's threads (the shared inference threads, or the
model's instance threads when it has a queue), and torch splits each operator over its
intra-op threads: ``calls at once x intra-op threads`` above the core count oversubscribes the
cores. A model's default is therefore ``cores // calls at once``: 1 for a model on the shared
threads (as many calls as cores), all cores for a batching model with one instance.

``torch.set_num_threads`` is process-wide, so with several torch models loaded one value must
serve them all: the smallest of the values model.yaml files set, else the smallest default.
Oversubscribing costs more than leaving a core idle (docs/runtimes/pytorch.md#threads).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass

from serval.core.model_spec import ModelSpec

logger = logging.getLogger(__name__)


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS tells it)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def default_intra_op_threads(spec: ModelSpec, cores: int) -> int:
    """``cores`` divided by the calls of this model that may run at once."""
    # A queued model runs on its instances' threads; the others share the inference threads.
    calls = (spec.instances or 1) if spec.scheduled else (spec.concurrency.limit or cores)
    return max(1, cores // calls)


@dataclass(frozen=True, slots=True)
class Wish:
    threads: int
    explicit: bool  # set in model.yaml, not the default


class IntraOpThreads:
    """The loaded models' wishes and the one value applied for all of them (thread-safe)."""

    def __init__(self, apply: Callable[[int], None]) -> None:
        self._apply = apply
        self._lock = threading.Lock()
        self._wishes: dict[object, Wish] = {}
        self._applied: int | None = None

    @property
    def applied(self) -> int | None:
        return self._applied

    def claim(self, owner: object, wish: Wish, name: str) -> int:
        """Register ``owner``'s wish; returns the count now applied to the process."""
        with self._lock:
            self._wishes[owner] = wish
            applied = self._update()
        if applied != wish.threads:
            logger.warning(
                "model %s: torch runs %d intra-op threads, not the %d it asks for: the count "
                "is one for the whole process, the smallest that the loaded torch models set "
                "(docs/runtimes/pytorch.md#threads)",
                name,
                applied,
                wish.threads,
            )
        return applied

    def release(self, owner: object) -> None:
        with self._lock:
            if self._wishes.pop(owner, None) is not None and self._wishes:
                self._update()

    def _update(self) -> int:
        explicit = [w.threads for w in self._wishes.values() if w.explicit]
        applied = min(explicit or [w.threads for w in self._wishes.values()])
        if applied != self._applied:
            self._apply(applied)
            self._applied = applied
        return applied
