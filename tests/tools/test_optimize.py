"""``serval.tools.optimize``: it reports what it did (quantized or not), keeps the interface,
and writes nothing it did not change or that differs beyond the tolerance."""

from __future__ import annotations

from pathlib import Path

import pytest

from serval.core.errors import ToolError
from tests.runtimes import builders
from tests.tools.models import mlp_regressor, versions

pytest.importorskip("skl2onnx")
onnx = pytest.importorskip("onnx")
from serval.tools.convert import convert_version  # noqa: E402
from serval.tools.onnx_sessions import interface, open_session  # noqa: E402
from serval.tools.optimize import optimize_version  # noqa: E402

QUANTIZED_OPS = {"DynamicQuantizeLinear", "MatMulInteger", "DynamicQuantizeMatMul"}


def _onnx_mlp(root: Path) -> Path:
    mlp_regressor(root)
    convert_version(root / "mlp", output_model=root / "mlp-onnx")
    return root / "mlp-onnx"


def test_quantizes_the_weights_into_a_new_version(tmp_path: Path) -> None:
    model = _onnx_mlp(tmp_path)
    result = optimize_version(model, runs=2)
    assert result.quantized_weights >= 3  # three MatMul weights
    assert not result.unchanged
    assert result.written == model / "2" / "model.onnx"
    assert result.size_after < result.size_before
    assert [t.label for t in result.latencies] == ["1 row", "64 rows"]
    ops = {node.op_type for node in onnx.load(result.written).graph.node}
    assert ops & QUANTIZED_OPS, ops
    before = open_session((model / "1" / "model.onnx").read_bytes())
    after = open_session(result.written.read_bytes())
    assert interface(after) == interface(before)  # FP64 input and output kept


def test_says_when_there_is_nothing_to_quantize(tmp_path: Path) -> None:
    """A LogisticRegression becomes one LinearClassifier operator: nothing to quantize, nothing
    to fuse, so no new version (it used to come out larger, labelled quantized)."""
    builders.sklearn_classifier(tmp_path, "sk")
    convert_version(tmp_path / "sk")
    result = optimize_version(tmp_path / "sk", runs=1)
    assert result.quantized_weights == 0
    assert result.unchanged
    assert result.written is None
    assert versions(tmp_path / "sk") == ["1", "2"]


def test_refuses_above_an_explicit_tolerance(tmp_path: Path) -> None:
    model = _onnx_mlp(tmp_path)
    result = optimize_version(model, tolerance=0.0, runs=1)
    assert result.quantized_weights > 0
    assert result.written is None
    assert versions(model) == ["1"]


def test_graph_optimization_only(tmp_path: Path) -> None:
    model = _onnx_mlp(tmp_path)
    result = optimize_version(model, quantize=False, runs=1)
    assert result.quantized_weights == 0
    assert result.worst < 1e-6


def test_refuses_a_version_that_is_not_onnx(tmp_path: Path) -> None:
    builders.sklearn_classifier(tmp_path, "sk")
    with pytest.raises(ToolError, match="optimize works on ONNX models"):
        optimize_version(tmp_path / "sk")
