"""``serval.tools.convert`` on TensorFlow versions (tf2onnx): a SavedModel's signature and a
Keras file become ONNX versions that accept the same requests and answer them alike; a model
with several signatures is converted one signature at a time, into another model."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from serval.core.errors import ToolError
from serval.core.tensors.datatypes import DataType
from serval.core.tensors.signatures import SIGNATURE_PARAMETER
from serval.core.types import InferenceRequest, Tensor
from tests.tools.models import load, versions

pytest.importorskip("tensorflow")
pytest.importorskip("tf2onnx")
from serval.tools.convert import convert_version
from tests.runtimes import tf_builders
from tests.tools import tf_sources


def request(x: np.ndarray, **parameters: str) -> InferenceRequest:
    return InferenceRequest("m", [Tensor("features", DataType.FP32, x)], parameters=parameters)


def answers(model_dir: Path, version: int, x: np.ndarray, **parameters: str) -> dict[str, object]:
    predictor = load(model_dir, version)
    try:
        return {t.name: t for t in predictor.predict(request(x, **parameters)).outputs}
    finally:
        predictor.close()


def test_a_saved_model_becomes_the_next_version_with_its_signature(tmp_path: Path) -> None:
    expected = tf_sources.single_signature(tmp_path, "m")
    result = convert_version(tmp_path / "m")
    assert result.written == tmp_path / "m" / "2" / "model.onnx"
    assert (result.runtime, result.worst) == ("tensorflow", 0.0)
    native, converted = load(tmp_path / "m", 1), load(tmp_path / "m", 2)
    try:
        assert converted.metadata.platform == "onnxruntime_onnx"
        assert converted.metadata.inputs == native.metadata.inputs
        assert [(s.name, s.datatype, s.shape) for s in converted.metadata.outputs] == [
            (s.name, s.datatype, s.shape) for s in native.metadata.outputs
        ]
    finally:
        native.close()
        converted.close()
    x = tf_builders.features(7, seed=3)
    got = answers(tmp_path / "m", 2, x)
    want = expected(x)
    np.testing.assert_allclose(got["scores"].data, want["scores"], rtol=1e-5, atol=1e-6)
    assert got["best"].datatype is DataType.INT64
    np.testing.assert_array_equal(got["best"].data, want["best"])


def test_a_keras_file_becomes_an_onnx_version(tmp_path: Path) -> None:
    expected = tf_builders.keras_file(tmp_path, "k")
    result = convert_version(tmp_path / "k")
    assert result.written == tmp_path / "k" / "2" / "model.onnx"
    x = tf_builders.features(5, seed=4)
    got = answers(tmp_path / "k", 2, x)
    np.testing.assert_allclose(
        got["scores"].data, expected["serving_default"]({"features": x})["scores"], atol=1e-5
    )


def test_one_signature_of_several_goes_to_another_model(tmp_path: Path) -> None:
    expected = tf_builders.tf_serving_layout(tmp_path, "m")
    with pytest.raises(ToolError, match=r"signatures are serving_default, length.*--output-model"):
        convert_version(tmp_path / "m")
    assert versions(tmp_path / "m") == ["1"]
    result = convert_version(tmp_path / "m", output_model=tmp_path / "m-onnx")
    assert result.written == tmp_path / "m-onnx" / "1" / "model.onnx"
    x = tf_builders.features(6, seed=5)
    got = answers(tmp_path / "m-onnx", 1, x)
    want = expected["serving_default"]({"features": x})
    np.testing.assert_allclose(got["scores"].data, want["scores"], atol=1e-5)
    np.testing.assert_array_equal(got["best"].data, want["best"])
    with pytest.raises(ToolError, match=r"BYTES input\(s\) text"):
        convert_version(tmp_path / "m", output_model=tmp_path / "o", signature="length")


def test_without_serving_default_a_signature_must_be_named(tmp_path: Path) -> None:
    expected = tf_builders.tf_serving_layout(tmp_path, "m", default=False)
    with pytest.raises(ToolError, match=r"no 'serving_default' signature.*--signature.*scores"):
        convert_version(tmp_path / "m", output_model=tmp_path / "o")
    with pytest.raises(ToolError, match=r"no signature 'nope'; it has: length, scores"):
        convert_version(tmp_path / "m", output_model=tmp_path / "o", signature="nope")
    convert_version(tmp_path / "m", output_model=tmp_path / "o", signature="scores")
    x = tf_builders.features(4, seed=6)
    native = answers(tmp_path / "m", 1, x, **{SIGNATURE_PARAMETER: "scores"})
    got = answers(tmp_path / "o", 1, x)
    np.testing.assert_allclose(got["scores"].data, native["scores"].data, atol=1e-5)
    np.testing.assert_allclose(got["scores"].data, expected["scores"]({"features": x})["scores"])


def test_checks_the_rows_file_against_the_input(tmp_path: Path) -> None:
    tf_sources.single_signature(tmp_path, "m")
    np.save(tmp_path / "bad.npy", np.zeros((3, 5)))
    with pytest.raises(ToolError, match=r"shape \[3, 5\]; input 'features' takes \[-1, 4\]"):
        convert_version(tmp_path / "m", rows_file=tmp_path / "bad.npy")
    np.save(tmp_path / "rows.npy", tf_builders.features(9, seed=7).astype(np.float64))
    result = convert_version(tmp_path / "m", rows_file=tmp_path / "rows.npy")
    assert (result.rows, result.written is not None) == (9, True)


def test_names_the_extra_when_tf2onnx_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tf_sources.single_signature(tmp_path, "m")
    monkeypatch.setitem(sys.modules, "tf2onnx", None)  # import tf2onnx raises ImportError
    with pytest.raises(ToolError, match=r"tf2onnx is missing; .*serval-server\[convert\]"):
        convert_version(tmp_path / "m")
    assert versions(tmp_path / "m") == ["1"]


def test_a_keras_export_converts_its_serving_default_into_another_model(tmp_path: Path) -> None:
    model = tf_builders.keras_mlp(seed=2)
    model.export(str(tmp_path / "m" / "1"), verbose=False)  # signatures serve, serving_default
    with pytest.raises(ToolError, match=r"signatures are serving_default, serve,"):
        convert_version(tmp_path / "m")
    result = convert_version(tmp_path / "m", output_model=tmp_path / "m-onnx")
    assert result.written is not None
    x = tf_builders.features(3, seed=8)
    (output,) = answers(tmp_path / "m-onnx", 1, x).values()
    np.testing.assert_allclose(output.data, model(x, training=False).numpy(), atol=1e-5)
