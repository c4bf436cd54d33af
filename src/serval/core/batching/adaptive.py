"""Adaptive batching: a latency target instead of a fixed batching delay (docs/batching.md).

The cost of a batch is learned online as a line, ``cost(b) = a + c·b`` seconds for ``b`` rows,
fitted by exponentially weighted least squares over the batches the model ran (as BentoML's
adaptive batching regresses batch time on batch size). Plans use the line plus two residual
spreads, so that a noisy model is planned for its slow batches, not its average ones.

With the latency target ``S`` (queue wait + execution of a request):

- **Batch limit.** A batch has at most ``B`` rows, the largest size whose cost is at most
  ``S / 2``: a request that arrives just after a batch of ``B`` rows started waits for it and
  then runs in the next one, ``2·cost(B) <= S``. ``B`` is also at most twice the largest
  batch that has run, so that sizes grow by doubling while the model learns.
- **Admission.** An arriving request's latency is predicted from the rows waiting ahead of it
  (at its priority level or higher), the running batches' remaining time and the free
  instances. If it exceeds the admission threshold (``S``, or less: see Feedback), the request
  is refused as overloaded at once, instead of letting it, and every request behind it, miss
  the target. A request on an idle model (nothing
  running, nothing waiting) is always accepted: that is also how a changed model is relearned.
  Until the first batch has finished, the cost is unknown and only what the free instances can
  run at once is accepted.
- **Feedback.** What the line does not see (a busy event loop, a paused process, a machine
  shared with others) shows in the latencies themselves. Admission compares predictions with
  a threshold, at first ``S``, tuned as Clipper tunes its batch size (additive increase,
  multiplicative decrease): a batch whose oldest request was answered later than
  ``_ALARM · S`` cuts it by ``_DECREASE`` (once per cut: requests admitted before a cut do not
  cut again); each batch answered in time raises it by ``_INCREASE · S``, up to ``S``.
- **Wait.** While another instance is busy, a batch below ``B`` rows waits for one more request
  if one is expected (the mean gap between arrivals) before the oldest request of the batch
  would have to start to finish within ``S / 2``. On an idle model a request never waits.

Everything here runs on the event loop; the caller passes the times (``time.perf_counter()``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from serval.core.errors import OverloadedError

# Below this weighted variance of batch sizes (rows squared) the observed sizes are too alike
# to tell the fixed cost from the cost per row; the last slope that could be told is kept.
_MIN_ROW_VARIANCE = 0.25
# Plans use the fitted cost plus this many residual spreads (standard deviations).
_MARGIN_SPREADS = 2.0
_MEAN_ABSOLUTE_TO_DEVIATION = math.sqrt(math.pi / 2)
# Times further from the line than this many spreads enter the fit clipped, once this many
# batches are known.
_CLIP_SPREADS = 3.0
_CLIP_AFTER = 8
# The admission threshold's feedback: cut when a batch answers later than _ALARM of the
# target, by this factor, never below _FLOOR of it; raised by _INCREASE of it per batch.
_ALARM = 0.9
_DECREASE = 0.8
_FLOOR = 0.25
_INCREASE = 0.01


class LinearCostModel:
    """``cost(rows) = intercept_s + slope_s · rows``, by least squares in which each observation
    weighs ``decay`` times the one after it (``decay`` 0.98: about the last 50 batches count).

    When the observed sizes are all alike, the slope stays what it was when they differed
    (before that, cost is taken as proportional to rows: no gain from batching, the cautious
    guess), and the intercept follows the mean. Neither goes below 0.

    ``spread_s`` estimates the residuals' standard deviation from their weighted mean absolute
    value (times 1.25, exact for normal residuals). Once a few batches are known, a time
    further than ``_CLIP_SPREADS`` spreads from the line enters the fit clipped to that
    distance: one stalled batch (a pause of the process) bends the line little, while a model
    that really became slower moves it batch by batch, as the spread grows."""

    def __init__(self, decay: float = 0.98) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"decay must be between 0 and 1, got {decay}")
        self._decay = decay
        # Weighted sums: weights, rows, seconds, rows², rows·seconds, |residual|.
        self._w = self._b = self._t = self._bb = self._bt = self._r = 0.0
        self._slope: float | None = None  # the last slope the observed sizes could tell
        self.observations = 0
        self.largest_rows = 0  # the most rows of an observed batch
        self.intercept_s = 0.0
        self.slope_s = 0.0
        self.spread_s = 0.0

    def observe(self, rows: int, seconds: float) -> None:
        """Record that a batch of ``rows`` rows took ``seconds``."""
        d = self._decay
        expected = self.predict(rows)
        fitted = seconds
        if self.observations >= _CLIP_AFTER and self.spread_s > 0:
            bound = _CLIP_SPREADS * self.spread_s
            fitted = min(max(seconds, expected - bound), expected + bound)
        self._w = self._w * d + 1.0
        self._b = self._b * d + rows
        self._t = self._t * d + fitted
        self._bb = self._bb * d + rows * rows
        self._bt = self._bt * d + rows * fitted
        self.observations += 1
        self.largest_rows = max(self.largest_rows, rows)
        self._fit()
        self._r = self._r * d + abs(seconds - self.predict(rows))
        self.spread_s = _MEAN_ABSOLUTE_TO_DEVIATION * self._r / self._w

    def predict(self, rows: int) -> float:
        """Seconds a batch of ``rows`` rows is expected to take."""
        return self.intercept_s + self.slope_s * rows

    def _fit(self) -> None:
        w = self._w
        mean_b, mean_t = self._b / w, self._t / w
        mean_bb, mean_bt = self._bb / w, self._bt / w
        variance = mean_bb - mean_b * mean_b
        if variance >= _MIN_ROW_VARIANCE:
            self._slope = max(0.0, (mean_bt - mean_b * mean_t) / variance)
        if self._slope is None:
            slope = mean_t / mean_b if mean_b > 0 else 0.0
            intercept = 0.0 if mean_b > 0 else mean_t
        else:
            slope = self._slope
            intercept = mean_t - slope * mean_b
        if intercept < 0.0:  # through the origin instead
            intercept, slope = 0.0, (mean_bt / mean_bb if mean_bb > 0 else 0.0)
        self.intercept_s, self.slope_s = intercept, slope


@dataclass(eq=False, slots=True)
class RunningBatch:
    """A batch on an instance, as the policy planned it."""

    started: float  # time.perf_counter()
    rows: int


def start_after(free_in: list[float], batches_ahead: int, cost: float) -> float:
    """Seconds until the batch after ``batches_ahead`` batches of ``cost`` seconds each starts,
    with instances free in ``free_in`` seconds (sorted ascending, one per instance).

    The batches take the instances in turn: exact while the instances free within one batch's
    cost of each other, which running batches no larger than those ahead do."""
    rounds, slot = divmod(batches_ahead, len(free_in))
    return free_in[slot] + rounds * cost


class AdaptivePolicy:
    """The adaptive batching decisions of one model version (see the module docstring)."""

    def __init__(
        self,
        latency_slo_s: float,
        max_batch_size: int,
        instances: int = 1,
        cost_model: LinearCostModel | None = None,
        gap_decay: float = 0.9,
    ) -> None:
        if latency_slo_s <= 0 or max_batch_size < 1 or instances < 1:
            raise ValueError("latency_slo_s, max_batch_size and instances must be positive")
        self.latency_slo_s = latency_slo_s
        self.cost_model = cost_model or LinearCostModel()
        self._max_batch_size = max_batch_size
        self._instances = instances
        self._gap_decay = gap_decay
        self._running: list[RunningBatch] = []
        self._last_arrival: float | None = None
        self._gap_s: float | None = None  # mean time between accepted requests
        self.threshold_s = latency_slo_s  # admission's bound on predicted latency
        self._cut_at = -math.inf  # when the threshold was last cut
        self._limit = max_batch_size
        self._refresh_limit()

    @property
    def batch_limit(self) -> int:
        """The most rows a batch may have now."""
        return self._limit

    def cost(self, rows: int) -> float:
        """Planned seconds for a batch of ``rows`` rows: the fitted cost plus its margin."""
        model = self.cost_model
        return model.predict(rows) + _MARGIN_SPREADS * model.spread_s

    def predicted_latency(self, rows: int, rows_ahead: int, now: float) -> float:
        """Seconds from ``now`` until a request of ``rows`` rows, with ``rows_ahead`` rows
        waiting before it, would be answered; infinite while the cost is unknown and it cannot
        run at once."""
        idle = self._instances - len(self._running)
        rows_through = rows_ahead + rows
        if not self.cost_model.observations:
            return 0.0 if rows_through <= idle * self._max_batch_size else math.inf
        free_in = sorted(
            max(0.0, batch.started + self.cost(batch.rows) - now) for batch in self._running
        )
        free_in[:0] = [0.0] * idle
        limit = self._limit
        ahead = (rows_through - 1) // limit  # full batches before the request's own
        start = start_after(free_in, ahead, self.cost(limit))
        # A batch that starts now holds what waits now; one that starts later may fill up.
        own = rows_through - ahead * limit if start == 0.0 else limit
        return start + self.cost(own)

    def admit(self, model_name: str, rows: int, rows_ahead: int, now: float) -> None:
        """Accept a request, or raise ``OverloadedError`` if it would miss the target."""
        if self._running or rows_ahead:
            latency = self.predicted_latency(rows, rows_ahead, now)
            if latency > self.threshold_s:
                raise OverloadedError(
                    f"model {model_name!r} cannot answer within its latency_slo_ms "
                    f"{self.latency_slo_s * 1e3:g}: {rows_ahead} rows are waiting and the "
                    f"request would take {_describe(latency)}; retry later",
                    retry_after_s=1.0
                    if math.isinf(latency)
                    else max(0.001, latency - self.threshold_s),
                )
        if self._last_arrival is not None:
            gap = now - self._last_arrival
            decay = self._gap_decay
            self._gap_s = gap if self._gap_s is None else decay * self._gap_s + (1 - decay) * gap
        self._last_arrival = now

    def wait_s(self, rows: int, waited_s: float) -> float:
        """How much longer a batch of ``rows`` rows, whose oldest request has waited
        ``waited_s``, should wait for more requests while another instance is busy (0: run
        it now)."""
        if not self.cost_model.observations or self._gap_s is None or rows >= self._limit:
            return 0.0
        budget = self.latency_slo_s / 2 - self.cost(rows + 1) - waited_s
        return budget if budget > self._gap_s else 0.0

    def started(self, rows: int, now: float) -> RunningBatch:
        batch = RunningBatch(now, rows)
        self._running.append(batch)
        return batch

    def finished(self, batch: RunningBatch, took_s: float | None) -> None:
        """``batch`` ended, after running ``took_s`` seconds on its instance (None: it
        failed, which teaches the cost model nothing)."""
        self._running.remove(batch)
        if took_s is not None:
            self.cost_model.observe(batch.rows, took_s)
            self._refresh_limit()

    def answered(self, oldest_arrival: float, now: float) -> None:
        """A batch was answered at ``now``; its oldest request arrived at ``oldest_arrival``.
        Tunes the admission threshold (the feedback of the module docstring)."""
        slo = self.latency_slo_s
        if now - oldest_arrival > _ALARM * slo:
            if oldest_arrival >= self._cut_at:
                self.threshold_s = max(_FLOOR * slo, self.threshold_s * _DECREASE)
                self._cut_at = now
        else:
            self.threshold_s = min(slo, self.threshold_s + _INCREASE * slo)

    def _refresh_limit(self) -> None:
        if not self.cost_model.observations:
            self._limit = self._max_batch_size
            return
        budget = self.latency_slo_s / 2 - self.cost(0)
        slope = self.cost_model.slope_s
        # (1e-6: a budget that fits exactly must not lose a row to rounding)
        fits = self._max_batch_size if slope <= 0 else int(budget / slope + 1e-6)
        # Trust the line up to twice the largest batch seen, no further: sizes grow by
        # doubling while the model learns (a slow start), never by a leap on a shaky slope.
        fits = min(fits, 2 * self.cost_model.largest_rows)
        self._limit = max(1, min(self._max_batch_size, fits))


def _describe(seconds: float) -> str:
    return "an unknown time" if math.isinf(seconds) else f"about {seconds * 1e3:.1f} ms"
