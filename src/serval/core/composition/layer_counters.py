"""What the cache, features and precomputed layers did, counted per model (and version): read
by the metrics at each scrape, so that counting costs a request one dict update.

Each count is keyed ``(family, model, version, outcome)``; ``version`` is "" for a family
counted per model. The families and their outcomes:

- ``cache``: ``hit``, ``miss``, ``skipped`` (the request said ``cache: false``),
  ``unavailable`` (the store did not answer: a miss), ``write_failed``; per version.
- ``features``: rows ``found``, ``defaulted`` (an unknown entity or field filled with
  defaults), ``unknown`` (refused); lookups made (``lookups``: one round trip each) and
  lookups ``unavailable`` (answered 503).
- ``precomputed``: rows answered ``precomputed``, by the ``model``, ``missing`` (refused),
  ``stale`` (older than ``max_age_s``), and lookups ``unavailable`` (rows fell back).
"""

from __future__ import annotations

from collections import defaultdict

CounterKey = tuple[str, str, str, str]


class LayerCounters:
    """Monotonic counts; ``snapshot`` copies them for a scrape."""

    __slots__ = ("_counts",)

    def __init__(self) -> None:
        self._counts: defaultdict[CounterKey, int] = defaultdict(int)

    def add(self, family: str, model: str, version: str, outcome: str, count: int = 1) -> None:
        self._counts[(family, model, version, outcome)] += count

    def get(self, family: str, model: str, version: str, outcome: str) -> int:
        return self._counts.get((family, model, version, outcome), 0)

    def snapshot(self) -> dict[CounterKey, int]:
        return dict(self._counts)
