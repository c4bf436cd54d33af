"""What shadow traffic has shown so far, per model and shadow version.

A traffic policy names shadow versions in its ``Choice``; the data plane runs the copies off
the request path and accounts each one here (sent, failed, dropped, compared with the primary
answer). The traffic API and the metrics read it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class ShadowStatistics:
    """Counters of one shadow version. ``agreement``: of the answers compared, the share that
    agreed with the primary (same labels, or the same argmax for scores); ``mean_abs_diff``:
    the mean absolute difference of numeric outputs over every value compared."""

    requests: int = 0  # copies that ran (answered or failed)
    errors: int = 0  # copies that failed
    dropped: int = 0  # copies never run: shadows had fallen behind
    compared: int = 0  # answers compared with the primary's
    agreed: int = 0  # of those, the ones that agreed
    abs_diff_sum: float = 0.0
    values_compared: int = 0  # numeric values behind abs_diff_sum

    @property
    def agreement(self) -> float | None:
        return self.agreed / self.compared if self.compared else None

    @property
    def mean_abs_diff(self) -> float | None:
        return self.abs_diff_sum / self.values_compared if self.values_compared else None

    def as_dict(self) -> dict[str, int | float | None]:
        return {
            "requests": self.requests,
            "errors": self.errors,
            "dropped": self.dropped,
            "agreement": self.agreement,
            "mean_abs_diff": self.mean_abs_diff,
        }


class ShadowBook:
    """Every model's shadow statistics; written on the event loop only."""

    __slots__ = ("_models",)

    def __init__(self) -> None:
        self._models: dict[str, dict[int, ShadowStatistics]] = {}

    def of(self, model: str, version: int) -> ShadowStatistics:
        """The statistics of ``version`` as a shadow of ``model`` (created at first use)."""
        versions = self._models.setdefault(model, {})
        statistics = versions.get(version)
        if statistics is None:
            statistics = versions[version] = ShadowStatistics()
        return statistics

    def statistics(self, model: str) -> dict[int, ShadowStatistics]:
        """A copy of the mapping: shadow version -> its statistics."""
        return dict(self._models.get(model, {}))

    def every_model(self) -> dict[str, dict[int, ShadowStatistics]]:
        """A copy of every model's mapping (for metrics, at scrape time)."""
        return {model: dict(versions) for model, versions in self._models.items()}

    def forget(self, model: str) -> None:
        """Start over (a new traffic policy for ``model``)."""
        self._models.pop(model, None)
