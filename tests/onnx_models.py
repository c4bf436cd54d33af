"""Small ONNX models built with onnx.helper for tests, written into a model repository."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from serval.core.tensors.datatypes import DataType

OPSET = [helper.make_opsetid("", 17)]

ONNX_TYPES = {
    DataType.BOOL: TensorProto.BOOL,
    DataType.UINT8: TensorProto.UINT8,
    DataType.UINT16: TensorProto.UINT16,
    DataType.UINT32: TensorProto.UINT32,
    DataType.UINT64: TensorProto.UINT64,
    DataType.INT8: TensorProto.INT8,
    DataType.INT16: TensorProto.INT16,
    DataType.INT32: TensorProto.INT32,
    DataType.INT64: TensorProto.INT64,
    DataType.FP16: TensorProto.FLOAT16,
    DataType.FP32: TensorProto.FLOAT,
    DataType.FP64: TensorProto.DOUBLE,
    DataType.BYTES: TensorProto.STRING,
}


def _model(graph: onnx.GraphProto) -> onnx.ModelProto:
    model = helper.make_model(graph, opset_imports=OPSET)
    model.ir_version = 8
    return model


def linear(weights: list[float], bias: float) -> onnx.ModelProto:
    """FP32 x [-1, len(weights)] -> y [-1, 1] = x @ weights + bias."""
    n = len(weights)
    return _model(
        helper.make_graph(
            [helper.make_node("Gemm", ["x", "W", "B"], ["y"])],
            "linear",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", n])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 1])],
            [
                numpy_helper.from_array(np.array(weights, np.float32).reshape(n, 1), "W"),
                numpy_helper.from_array(np.array([bias], np.float32), "B"),
            ],
        )
    )


def identity(datatype: DataType) -> onnx.ModelProto:
    """INPUT0 [-1, -1] of ``datatype`` -> OUTPUT0, the same."""
    kind = ONNX_TYPES[datatype]
    return _model(
        helper.make_graph(
            [helper.make_node("Identity", ["INPUT0"], ["OUTPUT0"])],
            "identity",
            [helper.make_tensor_value_info("INPUT0", kind, ["batch", "n"])],
            [helper.make_tensor_value_info("OUTPUT0", kind, ["batch", "n"])],
        )
    )


def add_sub() -> onnx.ModelProto:
    """Triton's "simple": INT32 INPUT0, INPUT1 [-1, 16] -> OUTPUT0 = sum, OUTPUT1 = difference."""
    inputs = [
        helper.make_tensor_value_info(n, TensorProto.INT32, ["batch", 16])
        for n in ("INPUT0", "INPUT1")
    ]
    outputs = [
        helper.make_tensor_value_info(n, TensorProto.INT32, ["batch", 16])
        for n in ("OUTPUT0", "OUTPUT1")
    ]
    return _model(
        helper.make_graph(
            [
                helper.make_node("Add", ["INPUT0", "INPUT1"], ["OUTPUT0"]),
                helper.make_node("Sub", ["INPUT0", "INPUT1"], ["OUTPUT1"]),
            ],
            "add_sub",
            inputs,
            outputs,
        )
    )


def classifier(features: int = 2) -> onnx.ModelProto:
    """FP32 x [-1, features] -> probabilities [-1, features] (softmax) and INT64 label [-1]
    (argmax): the shape of an sklearn classifier converted to ONNX."""
    return _model(
        helper.make_graph(
            [
                helper.make_node("Softmax", ["x"], ["probabilities"], axis=1),
                helper.make_node("ArgMax", ["x"], ["label"], axis=1, keepdims=0),
            ],
            "classifier",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", features])],
            [
                helper.make_tensor_value_info(
                    "probabilities", TensorProto.FLOAT, ["batch", features]
                ),
                helper.make_tensor_value_info("label", TensorProto.INT64, ["batch"]),
            ],
        )
    )


def affine(scale: float, shift: list[float], softmax: bool = False) -> onnx.ModelProto:
    """FP32 x [-1, n] -> y = x * scale + shift [-1, n] (n = len(shift)); with ``softmax``, a
    classifier of that instead: probabilities [-1, n] (softmax) and INT64 label [-1]."""
    n = len(shift)
    nodes = [
        helper.make_node("Mul", ["x", "S"], ["scaled"]),
        helper.make_node("Add", ["scaled", "B"], ["y"]),
    ]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", n])]
    if softmax:
        nodes += [
            helper.make_node("Softmax", ["y"], ["probabilities"], axis=1),
            helper.make_node("ArgMax", ["y"], ["label"], axis=1, keepdims=0),
        ]
        outputs = [
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", n]),
            helper.make_tensor_value_info("label", TensorProto.INT64, ["batch"]),
        ]
    return _model(
        helper.make_graph(
            nodes,
            "affine",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", n])],
            outputs,
            [
                numpy_helper.from_array(np.array([scale], np.float32), "S"),
                numpy_helper.from_array(np.array(shift, np.float32), "B"),
            ],
        )
    )


def busy(width: int = 4, size: int = 128) -> onnx.ModelProto:
    """FP32 x [-1, width] and INT64 n [-1, 1] -> y = x, after max(n) rounds of a size x size
    MatMul: a model whose run time the request chooses (n = 0 is quick)."""
    spin = helper.make_graph(
        [
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
            helper.make_node("MatMul", ["v_in", "W"], ["product"]),
            helper.make_node("Tanh", ["product"], ["v_out"]),
        ],
        "spin",
        [
            helper.make_tensor_value_info("round", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
            helper.make_tensor_value_info("v_in", TensorProto.FLOAT, [size, size]),
        ],
        [
            helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("v_out", TensorProto.FLOAT, [size, size]),
        ],
    )
    weights = np.random.default_rng(0).standard_normal((size, size)) / size**0.5
    return _model(
        helper.make_graph(
            [
                helper.make_node("ReduceMax", ["n"], ["rounds"], keepdims=0),
                helper.make_node("Loop", ["rounds", "", "V0"], ["v_final"], body=spin),
                helper.make_node("ReduceSum", ["v_final"], ["total"], keepdims=0),
                helper.make_node("Mul", ["total", "zero"], ["nothing"]),  # y depends on the loop
                helper.make_node("Add", ["x", "nothing"], ["y"]),
            ],
            "busy",
            [
                helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", width]),
                helper.make_tensor_value_info("n", TensorProto.INT64, ["batch", 1]),
            ],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", width])],
            [
                numpy_helper.from_array(weights.astype(np.float32), "W"),
                numpy_helper.from_array(np.eye(size, dtype=np.float32), "V0"),
                numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
            ],
        )
    )


def write_model(repository: Path, name: str, version: int, model: onnx.ModelProto) -> Path:
    """Write atomically (temp folder + rename), as a deployment tool should, so that a polling
    server never sees a half-written version."""
    folder = repository / name / str(version)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=folder.parent))
    onnx.save(model, staging / "model.onnx")
    staging.replace(folder)
    return folder


def remove_version(repository: Path, name: str, version: int) -> None:
    folder = repository / name / str(version)
    trash = folder.parent / f".removed-{version}"
    folder.replace(trash)
    shutil.rmtree(trash)
