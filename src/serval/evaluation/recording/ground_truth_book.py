"""Ground truth of monitored models, kept durably before the feedback API answers
(``core.feedback.GroundTruthRecorder``).

``check`` runs on the event loop for each item before anything is kept: ground truth that
cannot label its prediction (a string for a regression, three values for a two-row request) is
a 400 naming the request id. ``record`` writes the items to the store in a thread; when the
store cannot be reached they go to a spill file, fsync'ed before the answer, and are replayed
with the prediction log's spill (``replay``): accepted feedback is never lost.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

import orjson

from serval.core.errors import InvalidInputError, ServerNotReadyError
from serval.core.feedback import Feedback
from serval.core.types import ModelMetadata
from serval.evaluation.recording.monitored import MonitoredModel, MonitoredModels
from serval.storage.evaluation import EvaluationStore, GroundTruth, StoreUnavailableError
from serval.storage.spill import SpillFile

logger = logging.getLogger("serval.evaluation")


class GroundTruthBook:
    def __init__(
        self,
        store: EvaluationStore,
        spill: SpillFile,
        monitored: MonitoredModels,
        metadata: Callable[[str], ModelMetadata],
    ) -> None:
        """``metadata``: the model's metadata (its prediction output's datatype)."""
        self._store = store
        self._spill = spill
        self._monitored = monitored
        self._metadata = metadata
        self.joined: dict[str, int] = {}  # model -> items joined to a logged prediction
        self.spilled: dict[str, int] = {}  # model -> items spilled while the store was down

    def check(self, feedback: Feedback) -> None:
        model = self._monitored.get(feedback.model)
        if model is None or feedback.ground_truth is None:
            return
        from serval.evaluation.analysis.ground_truth import check_ground_truth  # noqa: PLC0415 - extra

        datatype = self._datatype(model)
        if datatype is None:  # no version loaded: checked when it is evaluated
            return
        # Rows are known for an id the ledger remembers (0: unknown); by key, one row.
        rows = 1 if feedback.key is not None else feedback.rows
        try:
            check_ground_truth(model.monitoring.task_kind, datatype, rows, feedback.ground_truth)
        except ValueError as exc:
            subject = (
                f"key {feedback.key!r}"
                if feedback.key is not None
                else f"id {feedback.request_id!r}"
            )
            raise InvalidInputError(f"ground_truth of {subject}: {exc}") from None

    async def record(self, model: str, feedback: Sequence[Feedback]) -> int | None:
        if self._monitored.get(model) is None:
            return None
        items = [
            GroundTruth(
                model,
                one.request_id,
                one.key,
                orjson.dumps(one.ground_truth),
                one.received,
            )
            for one in feedback
        ]
        return await asyncio.to_thread(self._write, model, items)

    def replay(self) -> int:
        """Write spilled ground truth to the store once it answers; how many were written."""
        if not self._spill.pending():
            return 0
        try:
            return self._spill.replay(self._store)
        except StoreUnavailableError:
            return 0

    def _write(self, model: str, items: list[GroundTruth]) -> int:
        try:
            joined = self._store.write_ground_truth(items)
        except StoreUnavailableError as exc:
            # Durable all the same: the spill file is fsync'ed before this returns.
            logger.warning(
                "evaluation store %s unreachable (%s): %d ground truths spilled to %s",
                self._store.location,
                exc,
                len(items),
                self._spill.folder,
            )
            try:
                self._spill.append(items)
            except OSError as disk:  # not kept anywhere: the client must send it again
                raise ServerNotReadyError(
                    f"ground truth could not be kept: the store is unreachable and the spill "
                    f"file cannot be written ({disk.strerror})",
                    retry_after_s=5.0,
                ) from disk
            self.spilled[model] = self.spilled.get(model, 0) + len(items)
            return 0
        self.joined[model] = self.joined.get(model, 0) + joined
        return joined

    def _datatype(self, model: MonitoredModel) -> str | None:
        """The datatype of the output ground truth is compared with (None: unknown)."""
        try:
            metadata = self._metadata(model.name)
        except Exception:  # not loaded (any more): the type is checked when it is evaluated
            return None
        wanted = model.monitoring.prediction
        outputs = [spec for spec in metadata.outputs if spec.name not in model.keys]
        for spec in outputs:
            if spec.name == wanted or (wanted is None and len(outputs) == 1):
                return str(spec.datatype)
        return None
