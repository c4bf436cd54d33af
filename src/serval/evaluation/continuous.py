"""Continuous evaluation as one part of the server: the prediction log, the ground-truth book,
the evaluator and the alerts over one store, and the periodic loop that evaluates every
monitored model. ``app.py`` builds it, subscribes it to the events and hands its parts to the
data plane, the REST adapter and the server's lifecycle.

Nothing here costs a server without monitored models more than a dictionary lookup per
request: the writer thread starts with the first monitored model, and the store (an SQLite
file by default) is touched only then.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry

from serval.core.events import EventBus
from serval.core.model_spec import ModelSpec
from serval.core.types import ModelMetadata
from serval.evaluation.alerting.alerts import AlertBook
from serval.evaluation.evaluator import Evaluator, ModelContext
from serval.evaluation.prometheus_metrics import EvaluationMetrics
from serval.evaluation.recording.ground_truth_book import GroundTruthBook
from serval.evaluation.recording.monitored import MonitoredModel, MonitoredModels
from serval.evaluation.recording.prediction_log import PredictionLog
from serval.evaluation.results import ModelEvaluation
from serval.evaluation.service import EvaluationService
from serval.storage.evaluation import Alert, EvaluationStore, StoreUnavailableError
from serval.storage.spill import SpillFile

logger = logging.getLogger("serval.evaluation")


@dataclass(frozen=True, slots=True)
class Rollouts:
    """What evaluation asks of the traffic policies (``core.routing.traffic``), on the loop."""

    rolls_back_on_alert: Callable[[str], frozenset[int]]
    roll_back_on_alert: Callable[[str, int, str], bool]


class ContinuousEvaluation:
    def __init__(
        self,
        store: EvaluationStore,
        repository: Path,
        state_dir: Path,
        *,
        queue_size: int,
        interval_s: float,
    ) -> None:
        spill_folder = state_dir / "spill"
        self.store = store
        self.interval_s = interval_s
        self.log = PredictionLog(
            store, SpillFile(spill_folder, "predictions"), queue_size=queue_size
        )
        self.monitored = MonitoredModels(repository, on_change=self._on_change)
        self.alert_counts: dict[tuple[str, str], int] = {}
        self.alerts = AlertBook(store, on_alert=self._count_alert, on_rollback=self._roll_back)
        self.evaluator = Evaluator(store, self.monitored, self.alerts)
        self._metadata: Callable[[str], ModelMetadata] | None = None
        self._rollouts: Rollouts | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._warmed = False  # the monitoring extra's libraries imported ahead of need
        self._events: EventBus | None = None
        self._listening = False
        self.ground_truth = GroundTruthBook(
            store, SpillFile(spill_folder, "ground-truth"), self.monitored, self._model_metadata
        )

    def attach(
        self,
        events: EventBus,
        configured: Callable[[Callable[[str, ModelSpec | None], None]], None],
        metadata: Callable[[str], ModelMetadata],
        known: Callable[[str], object],
        rollouts: Rollouts,
    ) -> EvaluationService:
        """Subscribe to ``events`` and to ``configured`` (the manager's accepted specs);
        ``metadata`` and ``known`` are the data plane's, ``rollouts`` the traffic
        controller's. Returns what the REST adapter reads."""
        self._metadata = metadata
        self._rollouts = rollouts
        self._events = events
        configured(self.monitored.configure)
        return EvaluationService(self.monitored, self.evaluate, known)

    def register_metrics(self, registry: CollectorRegistry) -> None:
        EvaluationMetrics(
            registry,
            evaluations=self.evaluator.latest,
            log_counts=lambda: self.log.counts,
            queued=lambda: self.log.queued,
            joined=self.ground_truth.joined,
            alerts=self.alert_counts,
        )

    def context(self, model: str) -> ModelContext:
        """What the loop knows of ``model`` for its evaluation (call on the loop)."""
        self._loop = asyncio.get_running_loop()
        inputs = outputs = None
        try:
            metadata = self._model_metadata(model)
        except Exception:  # no version loaded: evaluation says the outputs are unknown
            pass
        else:
            inputs, outputs = metadata.inputs, metadata.outputs
        rollbacks = self._rollouts.rolls_back_on_alert(model) if self._rollouts else frozenset()
        return ModelContext(inputs, outputs, rollbacks)

    async def evaluate(self, model: str) -> ModelEvaluation:
        """Evaluate ``model`` now, off the loop (``EvaluationService`` and the periodic run)."""
        context = self.context(model)
        return await asyncio.to_thread(self.evaluator.evaluate, model, context)

    async def run(self) -> None:
        """Evaluate each monitored model every ``interval_s`` and replay spilled ground
        truth, until cancelled (the server stops)."""
        unreachable = False
        while True:
            await asyncio.sleep(self.interval_s)
            names = self.monitored.names()
            if names:  # ground truth spilled while the store was down
                try:
                    await asyncio.to_thread(self.ground_truth.replay)
                except Exception:
                    logger.exception("replaying spilled ground truth failed")
            for name in names:
                try:
                    await self.evaluate(name)
                    unreachable = False
                except StoreUnavailableError as exc:
                    if not unreachable:
                        logger.warning("evaluation skipped: the store is unreachable: %s", exc)
                    unreachable = True
                except LookupError:  # no longer monitored
                    continue
                except Exception:
                    logger.exception("evaluating model %s failed", name)

    def degraded(self) -> str | None:
        """What readiness says while the store is unreachable (None when it is fine)."""
        return self.log.health()

    def close(self) -> None:
        """Write every queued record (the server stops), finish or give up the alerts'
        deliveries, and release the store."""
        self.alerts.close()
        self.log.close()
        self.store.close()

    # -- callbacks ------------------------------------------------------------------------

    def _model_metadata(self, model: str) -> ModelMetadata:
        if self._metadata is None:
            raise LookupError("not attached to a data plane yet")
        return self._metadata(model)

    def _on_change(self, name: str, model: MonitoredModel | None) -> None:
        if model is None:
            self.log.configure(name, None, ())
            self.evaluator.forget(name)
            return
        self.log.configure(name, model.monitoring.log.sample_rate, model.keys)
        self.log.start()
        if not self._listening and self._events is not None:
            # Subscribed with the first monitored model: until then requests pay nothing.
            self._listening = True
            self._events.on_prediction(self.log.on_prediction, self.log.wants)
        if not self._warmed and (model.monitoring.quality or model.monitoring.drift):
            self._warmed = True
            threading.Thread(target=_import_monitoring, name="serval-import", daemon=True).start()

    def _count_alert(self, alert: Alert) -> None:  # from the evaluation's thread
        key = (alert.model, alert.kind)
        self.alert_counts[key] = self.alert_counts.get(key, 0) + 1

    def _roll_back(self, alert: Alert) -> None:  # from the evaluation's thread
        rollouts, loop = self._rollouts, self._loop
        if rollouts is None or loop is None:
            return
        reason = (
            f"evaluation alert {alert.id}: {alert.kind} {alert.subject} {alert.value:.4g} "
            f"(threshold {alert.threshold:.4g})"
        )
        loop.call_soon_threadsafe(rollouts.roll_back_on_alert, alert.model, alert.version, reason)


def _import_monitoring() -> None:
    """Import what quality and drift use (scikit-learn, scipy, pyarrow: seconds), so that the
    first evaluation does not pay for it; a missing extra is said by the evaluation."""
    for module in ("sklearn.metrics", "scipy.stats", "scipy.spatial.distance", "pyarrow.parquet"):
        try:
            importlib.import_module(module)
        except ImportError:
            return
