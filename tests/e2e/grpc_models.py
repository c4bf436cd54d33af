"""Small ONNX models for the gRPC end-to-end tests, built with onnx.helper into a model
repository laid out as ``<repository>/<name>/<version>/model.onnx``.

* ``identity_fp32``, ``identity_int64``, ``identity_bool``, ``identity_bytes`` (ONNX string),
  ``identity_fp16``: ``OUTPUT0 = INPUT0``, shape ``[-1, -1]``;
* ``add_sub``: ``OUTPUT0 = INPUT0 + INPUT1``, ``OUTPUT1 = INPUT0 - INPUT1``, FP32 ``[-1, 4]``;
* ``versioned``: versions 1 and 2 both served (``version_policy: all``);
  version ``v`` answers ``OUTPUT0 = INPUT0 + v`` (FP32 ``[-1]``);
* ``scratch``: an FP32 identity that tests unload and load.
"""

from __future__ import annotations

from pathlib import Path

import onnx
from onnx import TensorProto, helper

OPSET = 17
IR_VERSION = 8

IDENTITY_TYPES = {
    "identity_fp32": TensorProto.FLOAT,
    "identity_int64": TensorProto.INT64,
    "identity_bool": TensorProto.BOOL,
    "identity_bytes": TensorProto.STRING,
    "identity_fp16": TensorProto.FLOAT16,
}


def _save(graph: onnx.GraphProto, repository: Path, name: str, version: int = 1) -> None:
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION
    )
    onnx.checker.check_model(model)
    folder = repository / name / str(version)
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(folder / "model.onnx"))


def identity(elem_type: int) -> onnx.GraphProto:
    shape = ["batch", "n"]
    return helper.make_graph(
        [helper.make_node("Identity", ["INPUT0"], ["OUTPUT0"])],
        "identity",
        [helper.make_tensor_value_info("INPUT0", elem_type, shape)],
        [helper.make_tensor_value_info("OUTPUT0", elem_type, shape)],
    )


def add_sub() -> onnx.GraphProto:
    shape = ["batch", 4]
    return helper.make_graph(
        [
            helper.make_node("Add", ["INPUT0", "INPUT1"], ["OUTPUT0"]),
            helper.make_node("Sub", ["INPUT0", "INPUT1"], ["OUTPUT1"]),
        ],
        "add_sub",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, shape) for n in ("INPUT0", "INPUT1")],
        [
            helper.make_tensor_value_info(n, TensorProto.FLOAT, shape)
            for n in ("OUTPUT0", "OUTPUT1")
        ],
    )


def add_constant(value: float) -> onnx.GraphProto:
    return helper.make_graph(
        [helper.make_node("Add", ["INPUT0", "offset"], ["OUTPUT0"])],
        "add_constant",
        [helper.make_tensor_value_info("INPUT0", TensorProto.FLOAT, ["n"])],
        [helper.make_tensor_value_info("OUTPUT0", TensorProto.FLOAT, ["n"])],
        initializer=[helper.make_tensor("offset", TensorProto.FLOAT, [], [value])],
    )


def build_repository(repository: Path) -> Path:
    """Write every model above into ``repository`` and return it."""
    for name, elem_type in IDENTITY_TYPES.items():
        _save(identity(elem_type), repository, name)
    _save(identity(TensorProto.FLOAT), repository, "scratch")
    _save(add_sub(), repository, "add_sub")
    for version in (1, 2):
        _save(add_constant(float(version)), repository, "versioned", version)
    (repository / "versioned" / "model.yaml").write_text("version_policy: all\n")
    return repository
