"""scikit-learn, XGBoost and LightGBM models -> ONNX (skl2onnx, onnxmltools).

The ONNX model keeps the interface of the native one: input ``input`` (FP32, ``[-1, n]``) and
outputs ``predict`` and ``predict_proba`` with the same shapes, so clients need no change.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from serval.cli.model_versions import CommandError
from serval.core.types import TensorSpec
from serval.runtimes.tabular import INPUT_NAME

_DEFAULT_OPSET = 15  # when a model imports no default-domain opset (ai.onnx.ml ops only)


def export_onnx(
    runtime: str, model: Any, n_features: int, outputs: Sequence[TensorSpec], opset: int | None
) -> onnx.ModelProto:
    try:
        if runtime == "sklearn":
            proto = _from_sklearn(model, n_features, opset)
        elif runtime == "xgboost":
            proto = _from_xgboost(model, n_features, opset)
        elif runtime == "lightgbm":
            proto = _from_lightgbm(model, n_features, opset)
        else:
            raise CommandError(f"cannot convert a {runtime!r} model")
    except ImportError as exc:
        raise CommandError(
            f"{exc.name} is missing; install the converters with: pip install 'serval[convert]'"
        ) from exc
    except (RuntimeError, NotImplementedError, ValueError, TypeError, KeyError) as exc:
        raise CommandError(f"the converter failed: {type(exc).__name__}: {exc}") from exc
    proto = dedupe_opsets(name_outputs(proto, outputs))
    onnx.checker.check_model(proto)
    return proto


def dedupe_opsets(proto: onnx.ModelProto) -> onnx.ModelProto:
    """One opset import per domain (the highest), the default domain included: some converters
    repeat or leave it out, and onnxruntime's quantizer refuses both."""
    versions: dict[str, int] = {}
    for opset in proto.opset_import:
        domain = "" if opset.domain == "ai.onnx" else opset.domain
        versions[domain] = max(versions.get(domain, 0), opset.version)
    versions.setdefault("", _DEFAULT_OPSET)
    del proto.opset_import[:]
    proto.opset_import.extend(helper.make_opsetid(d, v) for d, v in versions.items())
    return proto


def _from_sklearn(model: Any, n_features: int, opset: int | None) -> onnx.ModelProto:
    from skl2onnx import convert_sklearn  # noqa: PLC0415 - optional extra
    from skl2onnx.common.data_types import FloatTensorType  # noqa: PLC0415
    from sklearn.base import is_classifier  # noqa: PLC0415

    final = model[-1] if hasattr(model, "steps") else model
    options = {id(final): {"zipmap": False}} if is_classifier(final) else None
    proto: onnx.ModelProto = convert_sklearn(
        model,
        initial_types=[(INPUT_NAME, FloatTensorType([None, n_features]))],
        options=options,
        target_opset=opset,
    )
    return proto


def _from_xgboost(booster: Any, n_features: int, opset: int | None) -> onnx.ModelProto:
    import onnxmltools  # noqa: PLC0415 - optional extra
    from onnxmltools.convert.common.data_types import FloatTensorType  # noqa: PLC0415

    plain = booster.copy()
    plain.feature_names = None  # the converter reads the trees' f0, f1, ... feature ids
    proto: onnx.ModelProto = onnxmltools.convert_xgboost(
        plain,
        initial_types=[(INPUT_NAME, FloatTensorType([None, n_features]))],
        target_opset=opset,
    )
    return proto


def _from_lightgbm(booster: Any, n_features: int, opset: int | None) -> onnx.ModelProto:
    import onnxmltools  # noqa: PLC0415 - optional extra
    from onnxmltools.convert.common.data_types import FloatTensorType  # noqa: PLC0415

    proto: onnx.ModelProto = onnxmltools.convert_lightgbm(
        booster,
        initial_types=[(INPUT_NAME, FloatTensorType([None, n_features]))],
        target_opset=opset,
        zipmap=False,
    )
    return proto


def name_outputs(proto: onnx.ModelProto, specs: Sequence[TensorSpec]) -> onnx.ModelProto:
    """Rename the graph's outputs, in order, to ``specs``' names (dropping extra ones) and
    reshape any whose rank differs (a regressor's ``[N, 1]`` becomes ``[N]``)."""
    graph = proto.graph
    produced = list(graph.output)
    if len(produced) < len(specs):
        raise CommandError(
            f"the converted model has {len(produced)} output(s); the native one has {len(specs)}"
        )
    del graph.output[:]
    for old, spec in zip(produced, specs, strict=False):
        elem_type = old.type.tensor_type.elem_type
        rank = len(old.type.tensor_type.shape.dim)
        if rank != len(spec.shape):
            target = np.array([-1, *spec.shape[1:]], dtype=np.int64)
            shape_name = f"{spec.name}_shape"
            graph.initializer.append(numpy_helper.from_array(target, shape_name))
            graph.node.append(helper.make_node("Reshape", [old.name, shape_name], [spec.name]))
        else:
            _rename(graph, old.name, spec.name)
        dims: list[str | int | None] = ["N", *(d if d > 0 else None for d in spec.shape[1:])]
        graph.output.append(helper.make_tensor_value_info(spec.name, elem_type, dims))
    return proto


def _rename(graph: onnx.GraphProto, old: str, new: str) -> None:
    for node in graph.node:
        for index, name in enumerate(node.output):
            if name == old:
                node.output[index] = new
        for index, name in enumerate(node.input):
            if name == old:
                node.input[index] = new
