"""Spill files: records kept on disk while the store is down, replayed in order once it is back,
each exactly once even when a replay is cut short."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import pytest

from serval.storage.evaluation import GroundTruth, LoggedPrediction, StoreUnavailableError
from serval.storage.memory_evaluation import MemoryEvaluationStore
from serval.storage.spill import SpillFile
from tests.storage.evaluation_stores import NOW, prediction


class FailingStore(MemoryEvaluationStore):
    """A store that goes down after ``calls`` writes."""

    def __init__(self, calls: int) -> None:
        super().__init__()
        self.calls_left = calls

    def _call(self) -> None:
        if self.calls_left == 0:
            raise StoreUnavailableError("memory: down")
        self.calls_left -= 1

    def write_predictions(self, records: Sequence[LoggedPrediction]) -> None:
        self._call()
        super().write_predictions(records)

    def write_ground_truth(self, items: Sequence[GroundTruth]) -> int:
        self._call()
        return super().write_ground_truth(items)


def logged(store: MemoryEvaluationStore) -> list[str | None]:
    return [entry.prediction.request_id for page in store.joined("m") for entry in page]


def test_spilled_records_replay_in_order_and_go_away(tmp_path: Path) -> None:
    spill = SpillFile(tmp_path / "spill", "predictions")
    assert spill.pending() == 0
    spill.append([prediction(f"r{i}", at=NOW + i, keys=(f"k{i}",)) for i in range(3)])
    spill.append([GroundTruth("m", "r1", None, b"[1]", NOW + 5)])
    spill.append([prediction("r3", role="shadow", version=2)])
    assert spill.pending() == 5
    store = MemoryEvaluationStore()
    assert spill.replay(store, batch=2) == 5
    assert spill.pending() == 0
    assert list((tmp_path / "spill").iterdir()) == []
    assert logged(store) == ["r0", "r1", "r2", "r3"]
    [written] = store.recent_predictions("m", 1, 1)
    assert written.keys == ("k2",) and written.inputs == prediction("r2").inputs
    assert [x.label.value for x in store.labelled("m", 1, 10)] == [b"[1]"]
    assert spill.replay(store) == 0
    spill.append([prediction("after")])  # appending goes on after a replay
    assert spill.replay(store) == 1


def test_a_replay_cut_short_by_the_store_loses_and_repeats_nothing(tmp_path: Path) -> None:
    spill = SpillFile(tmp_path, "predictions")
    spill.append([prediction(f"a{i}") for i in range(5)])
    spill.append([GroundTruth("m", "a0", None, b"1", NOW)])
    spill.append([prediction(f"b{i}") for i in range(5)])
    store = FailingStore(calls=3)  # batches of 2: a0 a1 | a2 a3 | a4 | truth | ...
    with pytest.raises(StoreUnavailableError):
        spill.replay(store, batch=2)
    assert logged(store) == ["a0", "a1", "a2", "a3", "a4"]
    assert spill.pending() == 6
    # Another process (a new SpillFile over the folder) goes on where it stopped.
    store.calls_left = 100
    assert SpillFile(tmp_path, "predictions").replay(store, batch=2) == 6
    assert logged(store) == [f"a{i}" for i in range(5)] + [f"b{i}" for i in range(5)]
    assert store.counts("m")[1].labelled == 1
    assert spill.pending() == 0


def test_a_file_another_process_appends_to_is_left_to_it(tmp_path: Path) -> None:
    writer, other = SpillFile(tmp_path, "predictions"), SpillFile(tmp_path, "predictions")
    writer.append([prediction("busy")])  # open and locked by its writer
    other.append([prediction("mine")])
    store = MemoryEvaluationStore()
    assert other.replay(store) == 1
    assert logged(store) == ["mine"]
    assert writer.pending() == 1
    writer.close()  # the process ended (or rotated): its file is free to replay
    assert other.replay(store) == 1
    assert logged(store) == ["mine", "busy"]


def test_files_are_named_per_process(tmp_path: Path) -> None:
    spill = SpillFile(tmp_path, "ground-truth")
    spill.append([GroundTruth("m", None, "k", b"1", NOW)])
    [path] = tmp_path.iterdir()
    assert path.name.startswith("ground-truth.") and path.name.endswith(f".{os.getpid()}.spill")
    spill.close()


def test_a_line_cut_short_by_a_crash_is_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spill = SpillFile(tmp_path, "predictions")
    spill.append([prediction("whole")])
    spill.close()
    [path] = tmp_path.iterdir()
    with path.open("ab") as file:
        file.write(b'{"t":"p","model":"m","vers')
    store = MemoryEvaluationStore()
    assert spill.replay(store) == 1
    assert logged(store) == ["whole"]
    assert "line 2: not a spilled record" in caplog.text
    assert list(tmp_path.iterdir()) == []


def test_bytes_that_are_not_utf8_survive(tmp_path: Path) -> None:
    spill = SpillFile(tmp_path, "predictions")
    odd = LoggedPrediction("m", 1, "r", NOW, "primary", 1.0, 1, None, b"\xff\x00in", b"\xfeout")
    spill.append([odd, GroundTruth("m", "r", None, b"\x80", NOW)])
    store = MemoryEvaluationStore()
    assert spill.replay(store) == 2
    [written] = store.recent_predictions("m", 1, 1)
    assert (written.inputs, written.outputs) == (odd.inputs, odd.outputs)
    assert store.labelled("m", 1, 1)[0].label.value == b"\x80"
