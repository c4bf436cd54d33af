"""The ground-truth book: only monitored models' ground truth is kept, checked against the
prediction's type and rows (a 400 naming the id or key), written durably, spilled while the
store is down and replayed after; and which models are monitored follows model.yaml."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from serval.core.errors import InvalidInputError
from serval.core.feedback import Feedback
from serval.core.lifecycle.states import ServableId
from serval.core.model_spec import ModelSpec
from serval.core.tensors.datatypes import DataType
from serval.core.types import ModelMetadata, TensorSpec
from serval.evaluation.recording.ground_truth_book import GroundTruthBook
from serval.evaluation.recording.monitored import MonitoredModel, MonitoredModels
from serval.storage.evaluation import GroundTruth, StoreUnavailableError
from serval.storage.memory_evaluation import MemoryEvaluationStore
from serval.storage.spill import SpillFile

MONITORED = ModelSpec.parse(
    {"keys": ["user"], "monitoring": {"log": {"sample_rate": 1.0}, "prediction": "label"}},
    source="model.yaml",
)


class FlakyStore(MemoryEvaluationStore):
    def __init__(self) -> None:
        super().__init__()
        self.down = False

    def write_ground_truth(self, items: Sequence[GroundTruth]) -> int:
        if self.down:
            raise StoreUnavailableError("connection refused")
        return super().write_ground_truth(items)


def metadata(model: str) -> ModelMetadata:
    outputs = (
        TensorSpec("label", DataType.INT64, (-1,)),
        TensorSpec("probabilities", DataType.FP32, (-1, 3)),
        TensorSpec("user", DataType.BYTES, (-1,)),
    )
    return ModelMetadata(model, ("1",), "onnx", (), outputs)


def feedback(truth: object, rows: int = 2, key: str | None = None) -> Feedback:
    request_id = None if key is not None else "r1"
    servable = None if key is not None else ServableId("m", 1)
    return Feedback("m", request_id, servable, time.time(), None, truth, key=key, rows=rows)  # type: ignore[arg-type]


@pytest.fixture
def monitored(tmp_path: Path) -> MonitoredModels:
    models = MonitoredModels(tmp_path)
    models.configure("m", MONITORED)
    return models


def test_monitoring_follows_the_accepted_spec(tmp_path: Path) -> None:
    changes: list[tuple[str, MonitoredModel | None]] = []
    models = MonitoredModels(tmp_path, on_change=lambda name, model: changes.append((name, model)))
    models.configure("m", MONITORED)
    models.configure("m", MONITORED)  # the same spec at the next reconcile: no change
    models.configure("plain", ModelSpec())
    assert models.names() == ["m"] and len(changes) == 1
    model = models.get("m")
    assert (
        model is not None and model.keys == frozenset({"user"}) and model.folder == tmp_path / "m"
    )
    models.configure("m", None)  # the model left the repository
    assert models.get("m") is None and changes[-1] == ("m", None)


def test_ground_truth_that_cannot_label_its_prediction_names_the_id_or_key(
    tmp_path: Path, monitored: MonitoredModels
) -> None:
    book = GroundTruthBook(MemoryEvaluationStore(), SpillFile(tmp_path, "gt"), monitored, metadata)
    book.check(feedback([1, 2]))
    book.check(feedback(3, rows=1, key="u7"))
    with pytest.raises(InvalidInputError, match=r"id 'r1'.*2 rows"):
        book.check(feedback([1, 2, 0]))
    with pytest.raises(InvalidInputError, match=r"key 'u7'"):
        book.check(feedback("not a class", key="u7"))
    unmonitored = Feedback("other", "r1", None, time.time(), None, ["anything"])
    book.check(unmonitored)  # not evaluated: nothing to check


def test_ground_truth_is_stored_or_spilled_then_replayed(
    tmp_path: Path, monitored: MonitoredModels
) -> None:
    store = FlakyStore()
    book = GroundTruthBook(store, SpillFile(tmp_path, "gt"), monitored, metadata)
    assert asyncio.run(book.record("other", [feedback([1, 0])])) is None  # not monitored
    assert asyncio.run(book.record("m", [feedback([1, 0])])) == 0  # no prediction logged yet
    store.down = True
    assert asyncio.run(book.record("m", [feedback(1, rows=1, key="u7")])) == 0
    assert book.spilled == {"m": 1}
    assert book.replay() == 0  # still down: kept on disk
    store.down = False
    assert book.replay() == 1
    assert book.replay() == 0
