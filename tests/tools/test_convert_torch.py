"""``serval.tools.convert`` on PyTorch versions (torch.onnx): a torch.export program, a
TorchScript module and a trusted pickled module become ONNX versions that accept the same
requests (the batch dimension stays dynamic) and answer them alike, or nothing is written."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from serval.core.errors import ModelConfigError, ToolError
from serval.core.tensors.datatypes import DataType
from serval.core.types import InferenceRequest, Tensor
from tests.tools.models import load, versions

pytest.importorskip("torch")
pytest.importorskip("onnxscript")
from serval.tools.convert import convert_version
from tests.runtimes import torch_models
from tests.tools import torch_sources

TRUSTED = torch_models.DECLARED + "runtime_options: {trust_pickle: true}\n"


def rows(count: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(count, 4)).astype(np.float32)


def answers(model_dir: Path, version: int, x: np.ndarray) -> dict[str, Tensor]:
    predictor = load(model_dir, version)
    try:
        request = InferenceRequest("m", [Tensor("input", DataType.FP32, x)])
        return {t.name: t for t in predictor.predict(request).outputs}
    finally:
        predictor.close()


def assert_same(got: dict[str, Tensor], want: dict[str, np.ndarray]) -> None:
    assert list(got) == ["logits", "label"]
    np.testing.assert_allclose(got["logits"].data, want["logits"], rtol=1e-5, atol=1e-6)
    assert got["label"].datatype is DataType.INT64
    np.testing.assert_array_equal(got["label"].data, want["label"])


def test_an_exported_program_becomes_the_next_version(tmp_path: Path) -> None:
    expected = torch_models.exported(tmp_path, "m")
    result = convert_version(tmp_path / "m")
    assert result.written == tmp_path / "m" / "2" / "model.onnx"
    assert result.runtime == "torch"
    assert result.worst <= 1e-4
    converted = load(tmp_path / "m", 2)
    try:
        assert converted.metadata.platform == "onnxruntime_onnx"
        assert [(s.name, s.datatype.value, s.shape) for s in converted.metadata.inputs] == [
            ("input", "FP32", (-1, 4))
        ]
        assert [(s.name, s.datatype.value, s.shape) for s in converted.metadata.outputs] == [
            ("logits", "FP32", (-1, 3)),
            ("label", "INT64", (-1,)),
        ]
    finally:
        converted.close()
    for count in (1, 7, 33):  # the batch dimension is dynamic
        x = rows(count, seed=count)
        assert_same(answers(tmp_path / "m", 2, x), expected(x))


def test_torchscript_keeps_its_declared_model_yaml(tmp_path: Path) -> None:
    expected = torch_sources.scripted_tuple(tmp_path, "m")
    result = convert_version(tmp_path / "m")  # model.yaml's inputs/outputs fit the ONNX one
    assert result.written == tmp_path / "m" / "2" / "model.onnx"
    x = rows(6, seed=2)
    assert_same(answers(tmp_path / "m", 2, x), expected(x))


def test_torchscript_returning_a_dict_is_refused_with_the_way_out(tmp_path: Path) -> None:
    torch_models.scripted(tmp_path, "m")
    with pytest.raises(ToolError, match=r"cannot export the model: .*model\.pt2"):
        convert_version(tmp_path / "m")
    assert versions(tmp_path / "m") == ["1"]


def test_a_trusted_pickle_converts_into_another_model(tmp_path: Path) -> None:
    expected = torch_models.pickled(tmp_path, "m", yaml=TRUSTED)
    with pytest.raises(ToolError, match="sets runtime_options"):
        convert_version(tmp_path / "m")
    result = convert_version(tmp_path / "m", output_model=tmp_path / "m-onnx")
    assert result.written == tmp_path / "m-onnx" / "1" / "model.onnx"
    x = rows(5, seed=3)
    assert_same(answers(tmp_path / "m-onnx", 1, x), expected(x))


def test_an_untrusted_pickle_is_not_loaded(tmp_path: Path) -> None:
    torch_models.pickled(tmp_path, "m")
    with pytest.raises(ModelConfigError, match=r"refusing to load model\.pth"):
        convert_version(tmp_path / "m")


def test_refuses_a_difference_above_the_tolerance(tmp_path: Path) -> None:
    torch_models.exported(tmp_path, "m")
    result = convert_version(tmp_path / "m", tolerance=0.0)
    assert result.written is None
    assert result.differences["label"] == 0.0
    assert result.differences["logits"] > 0.0  # float32 kernels differ in the last bits
    assert versions(tmp_path / "m") == ["1"]


def test_signature_is_for_tensorflow_only(tmp_path: Path) -> None:
    torch_models.exported(tmp_path, "m")
    with pytest.raises(ToolError, match="--signature applies to TensorFlow models"):
        convert_version(tmp_path / "m", signature="serving_default")


def test_names_the_extra_when_onnxscript_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    torch_models.exported(tmp_path, "m")
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # import onnxscript raises ImportError
    with pytest.raises(ToolError, match=r"onnxscript is missing; .*serval-server\[convert\]"):
        convert_version(tmp_path / "m")
    assert versions(tmp_path / "m") == ["1"]
