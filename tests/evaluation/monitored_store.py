"""A monitored model as ``serval serve --state-dir`` would leave it: a repository folder with
``model.yaml`` and a reference Parquet file, and a SQLite store holding two versions' logged
predictions (the second with one input shifted), ground truth by id, an alert and a trigger."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from serval.core.types import Tensor
from serval.evaluation.recording.tensor_log import encode_tensors
from serval.storage.evaluation import Alert, GroundTruth, LoggedPrediction, Trigger
from serval.storage.sqlite_evaluation import SqliteEvaluationStore

MODEL = "churn"
T0 = 1_800_000_000.0
PLANS = np.array(["basic", "plus", "pro"], dtype=object)
MODEL_YAML = """\
monitoring:
  log: {sample_rate: 1.0}
  task: classification
  prediction: label
  score: probabilities
  reference: reference.parquet
  drift: {method: psi, window: 400}
  quality: {metric: accuracy, window: 200, min: 0.8}
"""


@dataclass(frozen=True, slots=True)
class Monitored:
    repository: Path
    state_dir: Path


def features(rng: np.random.Generator, n: int, charges_shift: float = 0.0) -> dict[str, Any]:
    return {
        "tenure": rng.normal(24.0, 6.0, n),
        "charges": rng.normal(70.0 + charges_shift, 10.0, n),
        "plan": rng.choice(PLANS, n, p=[0.5, 0.3, 0.2]),
    }


def build(root: Path, *, reference: bool = True, labels: bool = True) -> Monitored:
    rng = np.random.default_rng(7)
    repository, state_dir = root / "models", root / "state"
    folder = repository / MODEL
    (folder / "1").mkdir(parents=True)
    (folder / "model.yaml").write_text(MODEL_YAML, encoding="utf-8")
    if reference:
        columns = features(rng, 2000)
        columns["label"] = (columns["charges"] > 75.0).astype(np.int64)
        pq.write_table(pa.table(columns), folder / "reference.parquet")
    store = SqliteEvaluationStore(state_dir / "evaluation.sqlite3")
    records, truths = [], []
    for index in range(300):  # two rows each, over 5 hours; v2 from the middle, shifted
        version = 1 if index < 150 else 2
        x = features(rng, 2, charges_shift=0.0 if version == 1 else 25.0)
        predicted = (x["charges"] > 75.0).astype(np.int64)
        positive = np.where(predicted == 1, 0.8, 0.2)
        at = T0 + index * 60.0
        records.append(_logged(f"r{index}", version, at, x, predicted, positive))
        truth = predicted if rng.uniform() < 0.9 else 1 - predicted
        truths.append(GroundTruth(MODEL, f"r{index}", None, orjson.dumps(truth.tolist()), at + 30))
    store.write_predictions(records)
    if labels:
        store.write_ground_truth(truths)
    alert = store.raise_alert(
        Alert(MODEL, 2, "drift", "charges", 1.9, 0.2, T0 + 9_000.0, delivery="none")
    )
    assert alert is not None
    store.record_trigger(Trigger(MODEL, 2, alert.id, T0 + 9_001.0, "command", "ok"))
    store.close()
    return Monitored(repository, state_dir)


def _logged(
    request_id: str,
    version: int,
    at: float,
    x: dict[str, Any],
    predicted: np.ndarray[Any, Any],
    positive: np.ndarray[Any, Any],
) -> LoggedPrediction:
    inputs = [
        Tensor.from_numpy("tenure", x["tenure"]),
        Tensor.from_numpy("charges", x["charges"]),
        Tensor.from_numpy("plan", np.array([p.encode() for p in x["plan"]], dtype=object)),
    ]
    outputs = [
        Tensor.from_numpy("label", predicted),
        Tensor.from_numpy("probabilities", np.stack([1 - positive, positive], axis=1)),
    ]
    return LoggedPrediction(
        MODEL,
        version,
        request_id,
        at,
        "primary",
        2.0,
        2,
        None,
        encode_tensors(inputs),
        encode_tensors(outputs),
    )
