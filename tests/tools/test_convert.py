"""``serval.tools.convert``: the ONNX version accepts the requests its source accepted and
answers them alike, or nothing is written."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from serval.core.errors import ToolError
from serval.core.tensors.datatypes import DataType
from serval.core.types import InferenceRequest, Tensor
from tests.onnx_models import linear, write_model
from tests.runtimes import builders
from tests.tools.models import load, mlp_regressor, versions

pytest.importorskip("skl2onnx")
pytest.importorskip("onnxmltools")
from serval.tools.convert import convert_version

BUILDERS = {
    "sk": builders.sklearn_classifier,
    "xgb": builders.xgboost_classifier,
    "xgb-reg": builders.xgboost_booster_regressor,
    "lgb": builders.lightgbm_classifier,
}


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_the_onnx_version_has_the_native_interface_and_answers(tmp_path: Path, name: str) -> None:
    BUILDERS[name](tmp_path, name)
    result = convert_version(tmp_path / name)
    assert result.written == tmp_path / name / "2" / "model.onnx"
    assert result.worst <= 1e-4
    native, converted = load(tmp_path / name, 1), load(tmp_path / name, 2)
    try:
        assert converted.metadata.inputs == native.metadata.inputs
        assert converted.metadata.inputs[0].datatype is DataType.FP64
        assert converted.metadata.outputs == native.metadata.outputs
        rows = np.random.default_rng(5).normal(size=(7, 4))  # FP64, as clients sent it
        request = InferenceRequest(name, [Tensor("input", DataType.FP64, rows)])
        want = {t.name: t for t in native.predict(request).outputs}
        got = {t.name: t for t in converted.predict(request).outputs}
        assert list(got) == list(want)
        for output, tensor in want.items():
            assert got[output].datatype is tensor.datatype
            if tensor.datatype is DataType.BYTES:
                assert got[output].data.tolist() == tensor.data.tolist()
            else:
                np.testing.assert_allclose(got[output].data, tensor.data, atol=1e-4)
    finally:
        native.close()
        converted.close()


def test_a_regressor_keeps_its_fp64_output(tmp_path: Path) -> None:
    mlp_regressor(tmp_path)
    result = convert_version(tmp_path / "mlp", output_model=tmp_path / "mlp-onnx")
    assert result.written == tmp_path / "mlp-onnx" / "1" / "model.onnx"
    converted = load(tmp_path / "mlp-onnx", 1)
    try:
        (output,) = converted.metadata.outputs
        assert (output.name, output.datatype, output.shape) == ("predict", DataType.FP64, (-1,))
    finally:
        converted.close()


def test_refuses_a_difference_above_the_tolerance(tmp_path: Path) -> None:
    builders.sklearn_classifier(tmp_path, "sk")
    result = convert_version(tmp_path / "sk", tolerance=0.0)
    assert result.written is None
    assert result.differences["predict"] == 0.0
    assert result.differences["predict_proba"] > 0.0
    assert versions(tmp_path / "sk") == ["1"]


def test_names_what_it_cannot_convert(tmp_path: Path) -> None:
    write_model(tmp_path, "onnx-model", 1, linear([1.0], 0.0))
    with pytest.raises(ToolError, match="is ONNX already; see serval optimize"):
        convert_version(tmp_path / "onnx-model")
    builders.python_model(tmp_path, "custom")
    (tmp_path / "custom" / "model.yaml").write_text("runtime: python\n")
    with pytest.raises(ToolError, match="its predict is Python code, which has no ONNX form"):
        convert_version(tmp_path / "custom")
    with pytest.raises(ToolError, match="is not a model folder"):
        convert_version(tmp_path / "nothing")


def test_checks_the_rows_file(tmp_path: Path) -> None:
    builders.sklearn_classifier(tmp_path, "sk")
    np.save(tmp_path / "bad.npy", np.zeros((3, 5)))
    with pytest.raises(ToolError, match=r"shape \[3, 5\]; expected \[rows, 4\]"):
        convert_version(tmp_path / "sk", rows_file=tmp_path / "bad.npy")


def test_will_not_mix_runtime_options_into_the_onnx_version(tmp_path: Path) -> None:
    mlp_regressor(tmp_path)
    with pytest.raises(ToolError, match="sets runtime_options"):
        convert_version(tmp_path / "mlp")
    assert versions(tmp_path / "mlp") == ["1"]


def test_names_the_extra_when_a_converter_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    builders.sklearn_classifier(tmp_path, "sk")
    monkeypatch.setitem(sys.modules, "skl2onnx", None)  # import skl2onnx raises ImportError
    with pytest.raises(
        ToolError, match=r"skl2onnx is missing; .*pip install 'serval-server\[convert\]'"
    ):
        convert_version(tmp_path / "sk")
    assert versions(tmp_path / "sk") == ["1"]
