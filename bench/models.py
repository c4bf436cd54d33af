"""The two reference models of the benchmark, built with onnx.helper, and a model repository.

- ``tiny``: FP32 ``x`` [-1, 32] -> Gemm (32 x 2) -> Softmax -> ``y`` [-1, 2]. Running it costs a
  few microseconds, so a server's own overhead (HTTP, decoding, scheduling) is what is measured.
- ``mlp``: FP32 ``x`` [-1, 512] -> Gemm 2048 -> Relu -> Gemm 2048 -> Relu -> Gemm 16 -> ``y``
  [-1, 16]; about 20 MB of weights. One row costs about as much as a few dozen rows in a batch,
  so a server that batches concurrent requests serves many more rows per second.

The weights are seeded, so every run serves the same models. ``write_repository`` writes the
serval model repository (``model.yaml`` with dynamic batching) that the peers read too: they load
the same ``<model>/1/model.onnx`` files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


@dataclass(frozen=True)
class ModelSpec:
    name: str
    features: int  # columns of the input row
    outputs: int  # columns of the output row
    max_batch_size: int  # serval's and Triton's max_batch_size


MODELS = {
    "tiny": ModelSpec("tiny", 32, 2, 64),
    "mlp": ModelSpec("mlp", 512, 16, 128),
}
INPUT_NAME = "x"
OUTPUT_NAME = "y"


def _gemm(
    nodes: list[onnx.NodeProto],
    inits: list[onnx.TensorProto],
    rng: np.random.Generator,
    source: str,
    rows: int,
    cols: int,
    out: str,
) -> None:
    weight = (rng.standard_normal((rows, cols)) / np.sqrt(rows)).astype(np.float32)
    bias = (rng.standard_normal(cols) * 0.01).astype(np.float32)
    inits += [
        numpy_helper.from_array(weight, f"{out}_w"),
        numpy_helper.from_array(bias, f"{out}_b"),
    ]
    nodes.append(helper.make_node("Gemm", [source, f"{out}_w", f"{out}_b"], [out]))


def build(name: str) -> onnx.ModelProto:
    """The ONNX graph of reference model ``name`` (``tiny`` or ``mlp``)."""
    spec = MODELS[name]
    rng = np.random.default_rng(20261121)
    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []
    if name == "tiny":
        _gemm(nodes, inits, rng, INPUT_NAME, spec.features, spec.outputs, "logits")
        nodes.append(helper.make_node("Softmax", ["logits"], [OUTPUT_NAME], axis=1))
    else:
        _gemm(nodes, inits, rng, INPUT_NAME, spec.features, 2048, "h1")
        nodes.append(helper.make_node("Relu", ["h1"], ["a1"]))
        _gemm(nodes, inits, rng, "a1", 2048, 2048, "h2")
        nodes.append(helper.make_node("Relu", ["h2"], ["a2"]))
        _gemm(nodes, inits, rng, "a2", 2048, spec.outputs, OUTPUT_NAME)
    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["batch", spec.features])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["batch", spec.outputs])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # readable by every onnxruntime since 1.10
    onnx.checker.check_model(model)
    return model


def model_yaml(spec: ModelSpec, intra_op_threads: int, max_queue_size: int) -> str:
    """serval's model.yaml for a reference model: dynamic batching on, one instance."""
    return (
        f"max_batch_size: {spec.max_batch_size}\n"
        "instances: 1\n"
        "dynamic_batching:\n"
        f"  max_queue_size: {max_queue_size}\n"
        "runtime_options:\n"
        f"  intra_op_threads: {intra_op_threads}\n"
    )


def write_repository(
    root: Path, names: list[str], intra_op_threads: int, max_queue_size: int
) -> Path:
    """Write ``root/<name>/1/model.onnx`` and ``root/<name>/model.yaml`` for each model."""
    for name in names:
        folder = root / name / "1"
        folder.mkdir(parents=True, exist_ok=True)
        onnx.save(build(name), folder / "model.onnx")
        (root / name / "model.yaml").write_text(
            model_yaml(MODELS[name], intra_op_threads, max_queue_size), encoding="utf-8"
        )
    return root


def onnx_path(repository: Path, name: str) -> Path:
    return repository / name / "1" / "model.onnx"


def single_row(name: str) -> np.ndarray:
    """The one-row input every load generator sends for ``name`` (seeded, so the same)."""
    rng = np.random.default_rng(7)
    return rng.standard_normal((1, MODELS[name].features)).astype(np.float32)
