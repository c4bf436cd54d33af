"""The TensorFlow runtime in-process: layouts, metadata from the signature defs, signature
selection, strings both ways, model.yaml corrections, and the errors a client or an operator
acts on. The real server runs it in tests/runtimes/test_tensorflow_serving.py."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from serval.core.errors import InvalidInputError, ModelConfigError, ModelLoadError
from serval.core.lifecycle.loader import LoadRequest
from serval.core.model_spec import ModelSpec
from serval.core.tensors.datatypes import DataType
from serval.core.tensors.validation import validate_request
from serval.core.types import InferenceRequest, RequestedOutput, Tensor, TensorSpec
from serval.runtimes.registry import RuntimeRegistry
from tests.runtimes import tf_builders


def request_for(folder: Path, spec: ModelSpec | None = None) -> LoadRequest:
    return LoadRequest("m", 1, folder, spec or ModelSpec())


def fp32_request(rows: np.ndarray, **parameters: str) -> InferenceRequest:
    return InferenceRequest(
        "m", [Tensor("features", DataType.FP32, rows)], parameters=dict(parameters)
    )


def text_request(values: list[bytes]) -> InferenceRequest:
    data = np.array(values, dtype=np.object_)
    return InferenceRequest(
        "m", [Tensor("text", DataType.BYTES, data)], parameters={"signature": "length"}
    )


@pytest.mark.parametrize(
    ("artifact", "is_dir"),
    [("saved_model.pb", False), ("model.savedmodel", True), ("model.keras", False)],
)
def test_the_registry_chooses_tensorflow_for_each_layout(
    tmp_path: Path, artifact: str, is_dir: bool
) -> None:
    # Choosing imports nothing: no TensorFlow needed.
    path = tmp_path / artifact
    if is_dir:
        path.mkdir()
    else:
        path.write_bytes(b"")
    assert RuntimeRegistry.default().choose(request_for(tmp_path)).name == "tensorflow"


def test_without_tensorflow_a_savedmodel_names_the_extra_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As without TensorFlow (CI installs it): importing it fails, and the runtime's module is
    # imported afresh.
    monkeypatch.setitem(sys.modules, "tensorflow", None)
    monkeypatch.delitem(sys.modules, "serval.runtimes.tensorflow", raising=False)
    (tmp_path / "saved_model.pb").write_bytes(b"")
    with pytest.raises(ModelConfigError, match=r"pip install 'serval-server\[tensorflow\]'"):
        RuntimeRegistry.default()(request_for(tmp_path)).load()


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, tf_builders.Answers]:
    pytest.importorskip("tensorflow")
    folder = tmp_path_factory.mktemp("saved") / "1"
    return folder, tf_builders.saved_model(folder)


def load(folder: Path, spec: ModelSpec | None = None):  # type: ignore[no-untyped-def]
    from serval.runtimes.tensorflow import TensorFlowLoader  # noqa: PLC0415 - needs TF

    return TensorFlowLoader(request_for(folder, spec)).load()


def test_metadata_lists_every_signature_def_with_its_own_tensors(
    saved: tuple[Path, tf_builders.Answers],
) -> None:
    metadata = load(saved[0]).metadata
    assert metadata.platform == "tensorflow_savedmodel"
    assert metadata.signatures == ("serving_default", "length")
    assert not metadata.requires_signature
    assert metadata.inputs == (TensorSpec("features", DataType.FP32, (-1, 4)),)
    assert {spec.name: spec for spec in metadata.outputs} == {
        "scores": TensorSpec("scores", DataType.FP32, (-1, 3)),
        "best": TensorSpec("best", DataType.INT64, (-1,)),
    }
    length = metadata.signature_view("length")
    assert length is not None
    assert length.inputs == (TensorSpec("text", DataType.BYTES, (-1,)),)
    assert {spec.name: spec.datatype for spec in length.outputs} == {
        "length": DataType.INT32,
        "upper": DataType.BYTES,
    }


def test_the_default_signature_equals_tensorflow(saved: tuple[Path, tf_builders.Answers]) -> None:
    folder, answers = saved
    rows = tf_builders.features(5)
    response = load(folder).predict(fp32_request(rows))
    want = answers["serving_default"]({"features": rows})
    got = {tensor.name: tensor.data for tensor in response.outputs}
    np.testing.assert_allclose(got["scores"], want["scores"], rtol=1e-6)
    np.testing.assert_array_equal(got["best"], want["best"])
    assert response.timings.batch_size == 5


def test_a_named_signature_takes_and_returns_strings(
    saved: tuple[Path, tf_builders.Answers],
) -> None:
    predictor = load(saved[0])
    request = text_request([b"abc", "é!".encode(), b""])
    validate_request(request, predictor.metadata)  # checked against `length`'s own inputs
    response = predictor.predict(request)
    got = {tensor.name: tensor for tensor in response.outputs}
    assert got["length"].data.tolist() == [3, 2, 0]
    assert got["upper"].datatype is DataType.BYTES
    assert got["upper"].data.tolist() == [b"ABC", "é!".upper().encode(), b""]


def test_only_the_requested_output_is_returned(saved: tuple[Path, tf_builders.Answers]) -> None:
    request = fp32_request(tf_builders.features(2))
    request.outputs = [RequestedOutput("best")]
    response = load(saved[0]).predict(request)
    assert [tensor.name for tensor in response.outputs] == ["best"]


def test_requests_are_checked_against_the_signature_they_name(
    saved: tuple[Path, tf_builders.Answers],
) -> None:
    metadata = load(saved[0]).metadata
    with pytest.raises(InvalidInputError, match=r"unknown input 'features'.*expected inputs: text"):
        validate_request(fp32_request(tf_builders.features(1), signature="length"), metadata)
    with pytest.raises(InvalidInputError, match=r"unknown signature 'nope'.*serving_default"):
        validate_request(fp32_request(tf_builders.features(1), signature="nope"), metadata)
    wrong = InferenceRequest("m", [Tensor("features", DataType.FP64, np.zeros((1, 4)))])
    with pytest.raises(InvalidInputError, match="input 'features': expected datatype FP32"):
        validate_request(wrong, metadata)
    narrow = fp32_request(np.zeros((1, 3), dtype=np.float32))
    with pytest.raises(InvalidInputError, match="input 'features': expected shape"):
        validate_request(narrow, metadata)


def test_without_serving_default_a_request_must_name_a_signature(tmp_path: Path) -> None:
    pytest.importorskip("tensorflow")
    answers = tf_builders.saved_model(tmp_path / "1", default=False)
    predictor = load(tmp_path / "1")
    metadata = predictor.metadata
    assert metadata.signatures == ("length", "scores")
    assert metadata.requires_signature
    rows = tf_builders.features(2)
    with pytest.raises(InvalidInputError, match=r"no default signature.*length, scores"):
        validate_request(fp32_request(rows), metadata)
    with pytest.raises(InvalidInputError, match=r"no 'serving_default' signature.*length, scores"):
        predictor.predict(fp32_request(rows))
    named = fp32_request(rows, signature="scores")
    validate_request(named, metadata)
    got = {t.name: t.data for t in predictor.predict(named).outputs}
    np.testing.assert_allclose(got["scores"], answers["scores"]({"features": rows})["scores"])


def test_triton_layout(tmp_path: Path) -> None:
    pytest.importorskip("tensorflow")
    tf_builders.triton_layout(tmp_path, "m")
    metadata = load(tmp_path / "m" / "1").metadata
    assert metadata.signatures == ("serving_default", "length")


def test_a_keras_file_is_served_as_serving_default(tmp_path: Path) -> None:
    pytest.importorskip("tensorflow")
    answers = tf_builders.keras_file(tmp_path, "m")
    predictor = load(tmp_path / "m" / "1")
    metadata = predictor.metadata
    assert metadata.platform == "tensorflow_keras"
    assert metadata.signatures == ("serving_default",)
    assert metadata.inputs == (TensorSpec("features", DataType.FP32, (-1, 4)),)
    assert metadata.outputs == (TensorSpec("scores", DataType.FP32, (-1, 3)),)
    rows = tf_builders.features(4)
    got = predictor.predict(fp32_request(rows)).outputs[0].data
    np.testing.assert_allclose(got, answers["serving_default"]({"features": rows})["scores"])


def test_model_yaml_may_declare_an_input_fp64(saved: tuple[Path, tf_builders.Answers]) -> None:
    folder, answers = saved
    spec = ModelSpec.model_validate({"inputs": [{"name": "features", "datatype": "FP64"}]})
    predictor = load(folder, spec)
    assert predictor.metadata.inputs[0].datatype is DataType.FP64
    rows = tf_builders.features(3)
    request = InferenceRequest("m", [Tensor("features", DataType.FP64, rows.astype(np.float64))])
    got = {t.name: t.data for t in predictor.predict(request).outputs}
    np.testing.assert_allclose(
        got["scores"], answers["serving_default"]({"features": rows})["scores"]
    )


def test_an_override_of_an_unknown_tensor_names_the_signatures_tensors(
    saved: tuple[Path, tf_builders.Answers],
) -> None:
    spec = ModelSpec.model_validate({"inputs": [{"name": "nope", "datatype": "FP64"}]})
    with pytest.raises(ModelConfigError, match=r"nope not in any signature.*features, text"):
        load(saved[0], spec)


def test_unknown_runtime_options_are_a_config_error(tmp_path: Path) -> None:
    pytest.importorskip("tensorflow")
    from serval.runtimes.tensorflow import TensorFlowLoader  # noqa: PLC0415 - needs TF

    spec = ModelSpec.model_validate({"runtime_options": {"threads": 2}})
    with pytest.raises(ModelConfigError, match="runtime_options"):
        TensorFlowLoader(request_for(tmp_path, spec))


def test_a_folder_without_a_model_is_a_load_error(tmp_path: Path) -> None:
    pytest.importorskip("tensorflow")
    with pytest.raises(ModelLoadError, match=r"no TensorFlow model.*saved_model\.pb"):
        load(tmp_path)
    (tmp_path / "saved_model.pb").write_bytes(b"not a graph")
    with pytest.raises(ModelLoadError, match="not a loadable SavedModel"):
        load(tmp_path)


def test_an_input_the_graph_rejects_is_a_400_with_the_reason_only(tmp_path: Path) -> None:
    tf = pytest.importorskip("tensorflow")
    weights = tf.constant(np.ones((4, 2), np.float32))

    class AnyWidth(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, None], tf.float32, name="x")])
        def serve(self, x):  # type: ignore[no-untyped-def]
            return {"y": x @ weights}

    module = AnyWidth()
    tf.saved_model.save(module, str(tmp_path), signatures={"serving_default": module.serve})
    # Zero-filled warm-up rows are 1 wide, which this graph rejects too.
    predictor = load(tmp_path, ModelSpec.model_validate({"warmup": {"enabled": False}}))
    request = InferenceRequest("m", [Tensor("x", DataType.FP32, np.ones((2, 3), np.float32))])
    with pytest.raises(InvalidInputError) as caught:
        predictor.predict(request)
    message = str(caught.value)
    assert "cannot run signature 'serving_default'" in message
    assert "Matrix size-incompatible: In[0]: [2,3], In[1]: [4,2]" in message
    assert "File " not in message
    assert "Graph execution error" not in message
