"""Builds the bundled example models into examples/models/ (run: python examples/build_models.py).

- ``classifier``: 4 float features -> class probabilities (3 classes) and the predicted label.
- ``regressor``: 3 float features -> one value; version 1 and version 2 (different weights).
The weights are fixed numbers, so the files are reproducible and tiny.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HERE = Path(__file__).parent / "models"
OPSET = [helper.make_opsetid("", 17)]


def _save(model: onnx.ModelProto, name: str, version: int) -> None:
    model.ir_version = 8  # readable by every onnxruntime since 1.14
    onnx.checker.check_model(model)
    folder = HERE / name / str(version)
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(model, folder / "model.onnx")


def classifier() -> onnx.ModelProto:
    weights = np.array(
        [[0.4, -0.3, -0.1], [1.2, -0.2, -1.0], [-1.8, 0.3, 1.5], [-0.9, -0.6, 1.5]], np.float32
    )
    bias = np.array([0.3, 1.0, -1.3], np.float32)
    nodes = [
        helper.make_node("Gemm", ["features", "W", "B"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
        helper.make_node("ArgMax", ["logits"], ["label"], axis=1, keepdims=0),
    ]
    graph = helper.make_graph(
        nodes,
        "classifier",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", 4])],
        [
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 3]),
            helper.make_tensor_value_info("label", TensorProto.INT64, ["batch"]),
        ],
        [numpy_helper.from_array(weights, "W"), numpy_helper.from_array(bias, "B")],
    )
    return helper.make_model(graph, opset_imports=OPSET)


def regressor(weights: list[float], bias: float) -> onnx.ModelProto:
    nodes = [helper.make_node("Gemm", ["x", "W", "B"], ["y"])]
    graph = helper.make_graph(
        nodes,
        "regressor",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 1])],
        [
            numpy_helper.from_array(np.array(weights, np.float32).reshape(3, 1), "W"),
            numpy_helper.from_array(np.array([bias], np.float32), "B"),
        ],
    )
    return helper.make_model(graph, opset_imports=OPSET)


def main() -> None:
    _save(classifier(), "classifier", 1)
    _save(regressor([1.0, 2.0, 3.0], 0.5), "regressor", 1)
    _save(regressor([1.5, -2.0, 0.5], 1.0), "regressor", 2)
    (HERE / "regressor" / "model.yaml").write_text(
        "# Serve both versions; TF Serving clients can ask for a label.\n"
        "version_policy: all\n"
        "labels:\n"
        "  stable: 1\n"
        "  canary: 2\n"
    )
    print(f"wrote example models to {HERE}")


if __name__ == "__main__":
    main()
