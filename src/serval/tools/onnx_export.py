"""scikit-learn, XGBoost and LightGBM models -> ONNX (skl2onnx, onnxmltools).

The converters build an FP32 graph; ``onnx_interface`` then gives it the native model's input
and outputs (names, datatypes, shapes), so that its clients need no change.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import onnx
from onnx import helper

from serval.core.errors import ToolError
from serval.core.types import TensorSpec
from serval.runtimes.tabular import INPUT_NAME
from serval.tools.onnx_interface import match_interface
from serval.tools.quiet import quiet_converters

_DEFAULT_OPSET = 15  # when a model imports no default-domain opset (ai.onnx.ml ops only)


def export_onnx(
    runtime: str,
    model: Any,
    n_features: int,
    inputs: Sequence[TensorSpec],
    outputs: Sequence[TensorSpec],
    opset: int | None,
) -> onnx.ModelProto:
    """The ONNX graph of a native model, with the native model's interface. A missing
    converter raises ``ImportError`` (the caller names the extra to install)."""
    try:
        with quiet_converters():
            proto = _CONVERTERS[runtime](model, n_features, opset)
    except (RuntimeError, NotImplementedError, ValueError, TypeError, KeyError) as exc:
        raise ToolError(f"the converter failed: {type(exc).__name__}: {exc}") from exc
    proto = dedupe_opsets(match_interface(proto, inputs, outputs))
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


_CONVERTERS = {"sklearn": _from_sklearn, "xgboost": _from_xgboost, "lightgbm": _from_lightgbm}
CONVERTIBLE = tuple(_CONVERTERS)
