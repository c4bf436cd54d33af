"""The prediction log: sampling per model, the bounded queue that drops and counts, batches
written by the writer thread, spilling while the store is down and replaying once it is back,
and close() writing every queued record."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from serval.core.events import PredictionEvent
from serval.core.lifecycle.states import ServableId
from serval.core.records import RequestRecord
from serval.core.tensors.datatypes import DataType
from serval.core.types import InferenceRequest, InferenceResponse, Tensor
from serval.evaluation.recording.prediction_log import PredictionLog
from serval.evaluation.recording.tensor_log import decode_tensors
from serval.storage.evaluation import LoggedPrediction, StoreUnavailableError
from serval.storage.memory_evaluation import MemoryEvaluationStore
from serval.storage.spill import SpillFile
from tests.evaluation.alert_kit import wait_until

M1 = ServableId("m", 1)


class FlakyStore(MemoryEvaluationStore):
    """The memory store, unreachable while ``down`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False

    def write_predictions(self, records: Sequence[LoggedPrediction]) -> None:
        if self.down:
            raise StoreUnavailableError("connection refused")
        super().write_predictions(records)


def event(request_id: str, rows: int = 2, *, role: str = "primary") -> PredictionEvent:
    x = Tensor("x", DataType.FP32, np.arange(rows * 3, dtype=np.float32).reshape(rows, 3))
    user = Tensor("user", DataType.BYTES, np.array([f"u{i}".encode() for i in range(rows)], object))
    request = InferenceRequest("m", [x, user], id=request_id)
    record = RequestRecord("rest_v2", "infer", "m", 0)
    record.role = role
    request.record = record
    y = Tensor("y", DataType.INT64, np.arange(rows, dtype=np.int64))
    return PredictionEvent(M1, request, InferenceResponse("m", [y, user]), None, 2_500_000)


@pytest.fixture
def spill(tmp_path: Path) -> SpillFile:
    return SpillFile(tmp_path / "spill", "predictions")


def test_only_monitored_models_are_sampled_at_their_rate(spill: SpillFile) -> None:
    log = PredictionLog(MemoryEvaluationStore(), spill)
    request = event("r").request
    assert not log.wants(request)
    log.configure("m", 1.0, ())
    assert log.wants(request)
    log.configure("m", 0.25, ())
    draws = sum(log.wants(request) for _ in range(10_000))
    assert 2_300 <= draws <= 2_700  # Binomial(10000, 0.25): sd 43
    log.configure("m", None, ())
    assert not log.wants(request)


def test_records_are_written_with_keys_apart_and_close_writes_the_rest(
    spill: SpillFile,
) -> None:
    store = MemoryEvaluationStore()
    log = PredictionLog(store, spill, batch_size=3)
    log.configure("m", 1.0, {"user"})
    log.start()
    for index in range(7):
        log.on_prediction(event(f"r{index}", role="shadow" if index == 6 else "primary"))
    log.close()  # blocks until every record is written
    assert log.queued == 0 and log.counts.logged == {"m": 7}
    records = store.recent_predictions("m", 1, 10)
    assert sorted(r.request_id or "" for r in records) == [f"r{i}" for i in range(6)]
    record = records[0]
    assert record.keys == ("u0", "u1") and record.rows == 2 and record.latency_ms == 2.5
    assert set(decode_tensors(record.inputs)) == {"x"}  # the key is kept apart
    assert decode_tensors(record.outputs)["y"].data.tolist() == [0, 1]
    assert store.recent_predictions("m", 1, 10, role="shadow")[0].request_id == "r6"


def test_a_full_queue_drops_and_counts_and_a_failed_request_is_not_logged(
    spill: SpillFile,
) -> None:
    log = PredictionLog(MemoryEvaluationStore(), spill, queue_size=2)
    log.configure("m", 1.0, ())
    failed = event("failed")
    failed.response = None
    log.on_prediction(failed)
    for index in range(5):  # the writer is not started: the queue fills
        log.on_prediction(event(f"r{index}"))
    assert log.queued == 2 and log.counts.dropped == {"m": 3}


def test_an_unreachable_store_spills_then_replays_once_it_is_back(spill: SpillFile) -> None:
    store = FlakyStore()
    store.down = True
    log = PredictionLog(store, spill)
    log.configure("m", 1.0, ())
    log.start()
    try:
        for index in range(5):
            log.on_prediction(event(f"r{index}"))
        wait_until(lambda: log.counts.spilled.get("m") == 5, "five records spilled")
        health = log.health()
        assert health is not None and "unreachable" in health and str(spill.folder) in health
        store.down = False
        wait_until(lambda: log.health() is None, "the store back")
        wait_until(lambda: len(store.recent_predictions("m", 1, 10)) == 5, "the replay")
    finally:
        log.close()
    assert spill.pending() == 0


def test_close_with_the_store_down_spills_what_is_queued(tmp_path: Path) -> None:
    store = FlakyStore()
    store.down = True
    spill = SpillFile(tmp_path / "spill", "predictions")
    log = PredictionLog(store, spill)
    log.configure("m", 1.0, ())
    for index in range(4):
        log.on_prediction(event(f"r{index}"))
    log.close()  # never started: close itself writes (here: spills) the queue
    assert spill.pending() == 4
    store.down = False
    assert SpillFile(tmp_path / "spill", "predictions").replay(store) == 4
    assert len(store.recent_predictions("m", 1, 10)) == 4
