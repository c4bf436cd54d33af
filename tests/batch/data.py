"""Models and input files for the batch tests: a repository written with onnx.helper, rows
drawn from a seeded generator and written as Parquet, CSV or JSON lines parts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from tests.onnx_models import affine, classifier, linear, write_model

WEIGHTS = [1.0, 2.0, -1.0]
FEATURES = ["a", "b", "c"]
PIPELINE = """
pipeline:
  steps:
    - {name: scale, model: scaler, inputs: {x: inputs.raw}}
    - {name: clf, model: classifier, inputs: {x: scale.y}}
  outputs: {probabilities: clf.probabilities, label: clf.label}
"""


def repository(root: Path) -> Path:
    """``lin`` (x [-1, 3] -> y [-1, 1], versions 1 and 2), and the pipeline ``p``: scaler
    then classifier."""
    write_model(root, "lin", 1, linear(WEIGHTS, 0.5))
    write_model(root, "lin", 2, linear([0.0, 0.0, 1.0], 0.0))
    write_model(root, "scaler", 1, affine(2.0, [1.0, -1.0]))
    write_model(root, "classifier", 1, classifier())
    (root / "p").mkdir()
    (root / "p" / "model.yaml").write_text(PIPELINE)
    return root


def run_onnx(model_path: Path, name: str, feeds: dict[str, np.ndarray]) -> np.ndarray:
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    result: np.ndarray = session.run([name], feeds)[0]
    return result


def rows(count: int, seed: int = 0) -> pa.Table:
    """``id`` (unique, shuffled), ``a``, ``b``, ``c`` (FP32) and a text column ``note``."""
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(count, 3)).astype(np.float32)
    ids = rng.permutation(count).astype(np.int64) * 7 + 3
    columns: dict[str, object] = {"id": ids}
    for index, name in enumerate(FEATURES):
        columns[name] = features[:, index]
    columns["note"] = [f"n{i}" for i in range(count)]
    return pa.table(columns)


def features_of(table: pa.Table) -> np.ndarray:
    return np.column_stack([table.column(c).to_numpy() for c in FEATURES]).astype(np.float32)


def write_parts(table: pa.Table, folder: Path, parts: int, fmt: str = "parquet") -> list[Path]:
    """``table`` cut into ``parts`` files of ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    size = -(-table.num_rows // parts)
    paths = []
    for index in range(parts):
        piece = table.slice(index * size, size)
        path = folder / f"in-{index:02d}.{fmt}"
        if fmt == "parquet":
            pq.write_table(piece, path, row_group_size=max(1, size // 3))
        elif fmt == "csv":
            pa_csv.write_csv(piece, path)
        else:
            path.write_text("".join(json.dumps(row) + "\n" for row in piece.to_pylist()))
        paths.append(path)
    return paths
