"""The MLflow runtimes in-process: signatures as tensors, the python_function flavor, the
pickle and skops rules, missing dependencies, and ``runtime: native``."""

# ruff: noqa: PLC0415 - frameworks are imported after pytest.importorskip

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from serval.core.errors import ModelConfigError, ModelLoadError
from serval.core.lifecycle.loader import LoadRequest
from serval.core.model_spec import ModelSpec
from serval.core.servable import Predictor
from serval.core.tensors.datatypes import DataType
from serval.core.types import InferenceRequest, Tensor
from serval.runtimes.mlflow.dependencies import missing_dependency, missing_module
from serval.runtimes.mlflow.mlmodel import read_mlmodel
from serval.runtimes.mlflow.schema import Kind, parse_schema
from serval.runtimes.registry import RuntimeRegistry
from tests.runtimes.builders import training_data, version_folder

ROWS = np.random.default_rng(3).normal(size=(6, 4))


def load(folder: Path, **spec: Any) -> Predictor:
    request = LoadRequest(folder.parent.name, 1, folder, ModelSpec(**spec))
    return RuntimeRegistry.default()(request).load()


def predict(predictor: Predictor, parameters: dict[str, Any] | None = None, **inputs: Any) -> Any:
    tensors = []
    for name, values in inputs.items():
        array = np.asarray(values)
        if array.dtype.kind in "US":
            array = np.array([str(v).encode() for v in array.ravel()], dtype=np.object_)
        tensors.append(Tensor(name, DataType.from_numpy(array.dtype), array))
    request = InferenceRequest("m", tensors, parameters=parameters or {})
    return {t.name: t.data for t in predictor.predict(request).outputs}


def write_mlmodel(folder: Path, flavors: dict[str, Any], signature: dict[str, Any]) -> Path:
    import yaml

    folder.mkdir(parents=True, exist_ok=True)
    document = {
        "flavors": flavors,
        "signature": {k: json.dumps(v) for k, v in signature.items()},
    }
    (folder / "MLmodel").write_text(yaml.safe_dump(document))
    return folder


# -- signatures, without MLflow ----------------------------------------------------------


def test_a_column_signature_gives_one_input_per_column() -> None:
    items = [
        {"type": "double", "name": "x", "required": True},
        {"type": "long", "name": "n", "required": True},
        {"type": "string", "name": "s", "required": True},
        {"type": "boolean", "name": "b", "required": True},
        {"type": "float", "name": "f", "required": True},
        {"type": "integer", "name": "i", "required": True},
        {"type": "binary", "name": "raw", "required": True},
    ]
    schema = parse_schema(items, "input", "sig")
    assert schema.kind is Kind.COLUMNS
    assert [(s.name, s.datatype, s.shape) for s in schema.specs] == [
        ("x", DataType.FP64, (-1,)),
        ("n", DataType.INT64, (-1,)),
        ("s", DataType.BYTES, (-1,)),
        ("b", DataType.BOOL, (-1,)),
        ("f", DataType.FP32, (-1,)),
        ("i", DataType.INT32, (-1,)),
        ("raw", DataType.BYTES, (-1,)),
    ]


def test_a_tensor_signature_gives_its_tensors_and_names_the_unnamed() -> None:
    one = parse_schema(
        [{"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, 4]}}], "input", "s"
    )
    assert one.kind is Kind.TENSORS
    assert not one.named
    assert [(s.name, s.datatype, s.shape) for s in one.specs] == [("input", DataType.FP32, (-1, 4))]
    two = parse_schema(
        [
            {"type": "tensor", "tensor-spec": {"dtype": "int64", "shape": [-1]}},
            {"type": "tensor", "tensor-spec": {"dtype": "float64", "shape": [-1, 3]}},
        ],
        "predict",
        "s",
    )
    assert [s.name for s in two.specs] == ["predict_0", "predict_1"]


@pytest.mark.parametrize(
    ("items", "message"),
    [
        ([{"type": "datetime", "name": "when"}], "column type 'datetime'"),
        (
            [{"type": "double", "name": "x"}, {"type": "tensor", "tensor-spec": {}}],
            "mixes column and tensor",
        ),
        ([{"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": "?"}}], "shape"),
        ([{"type": "double", "name": "x"}, {"type": "long", "name": "x"}], "twice"),
    ],
)
def test_a_signature_serval_cannot_serve_is_a_load_error(
    items: list[dict[str, Any]], message: str
) -> None:
    with pytest.raises(ModelLoadError, match=message):
        parse_schema(items, "input", "sig")


def test_an_mlmodel_without_flavors_or_file_is_a_load_error(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="no MLmodel file"):
        read_mlmodel(tmp_path)
    (tmp_path / "MLmodel").write_text("signature: {}\n")
    with pytest.raises(ModelLoadError, match="names no flavors"):
        read_mlmodel(tmp_path)


def test_a_missing_module_names_the_package_the_extra_and_the_requirement(
    tmp_path: Path,
) -> None:
    (tmp_path / "requirements.txt").write_text("mlflow==3.1\nscikit-learn==1.5.2\n")
    error = missing_dependency("sklearn", tmp_path)
    assert "'scikit-learn'" in str(error)
    assert "serval-server[sklearn]" in str(error)
    assert "scikit-learn==1.5.2" in str(error)
    other = missing_dependency("catboost", tmp_path)
    assert "pip install 'catboost'" in str(other)
    assert "serval-server[" not in str(other)


def test_the_missing_module_is_found_through_wrapping_exceptions() -> None:
    try:
        try:
            raise ModuleNotFoundError("No module named 'torch.nn'", name="torch.nn")
        except ModuleNotFoundError as exc:
            raise RuntimeError("Failed to load the model") from exc
    except RuntimeError as wrapped:
        assert missing_module(wrapped) == "torch"
    assert missing_module(ValueError("Error: No module named 'lightgbm.sklearn'")) == "lightgbm"
    assert missing_module(ValueError("something else")) is None


# -- runtime: native, without MLflow ------------------------------------------------------


def test_native_has_no_runtime_yet_for_a_flavor_serval_does_not_serve(tmp_path: Path) -> None:
    folder = write_mlmodel(
        version_folder(tmp_path, "torchy"),
        {"python_function": {}, "pytorch": {"model_data": "data"}},
        {},
    )
    (folder / "data").mkdir()
    with pytest.raises(ModelConfigError, match="'torch' runtime does not serve an MLmodel's"):
        load(folder, runtime="native")


def test_native_refuses_a_model_without_a_native_flavor(tmp_path: Path) -> None:
    folder = write_mlmodel(
        version_folder(tmp_path, "custom"), {"python_function": {"loader_module": "x"}}, {}
    )
    with pytest.raises(ModelConfigError, match="no flavor serval runs natively"):
        load(folder, runtime="native")


def test_native_refuses_a_file_outside_the_model_folder(tmp_path: Path) -> None:
    folder = write_mlmodel(
        version_folder(tmp_path, "escape"), {"onnx": {"data": "../../outside.onnx"}}, {}
    )
    (tmp_path / "outside.onnx").write_bytes(b"")
    with pytest.raises(ModelLoadError, match="outside the model folder"):
        load(folder, runtime="native")


def test_native_serves_an_onnx_flavor_with_the_onnx_runtime(tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    from tests.onnx_models import linear

    folder = write_mlmodel(version_folder(tmp_path, "lin"), {"onnx": {"data": "lin.onnx"}}, {})
    model = linear([1.0, 2.0, -1.0, 0.5], 0.25)
    (folder / "lin.onnx").write_bytes(model.SerializeToString())
    predictor = load(folder, runtime="native")
    assert predictor.metadata.platform == "onnxruntime_onnx"
    rows = ROWS.astype(np.float32)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_array_equal(
        predict(predictor, x=rows)["y"], session.run(["y"], {"x": rows})[0]
    )


# -- the python_function flavor -----------------------------------------------------------


@pytest.fixture
def models() -> Any:
    pytest.importorskip("mlflow")
    pytest.importorskip("sklearn")
    from tests.runtimes import mlflow_models

    return mlflow_models


def test_an_sklearn_model_is_served_by_column(tmp_path: Path, models: Any) -> None:
    reference = models.sklearn_model(tmp_path, "sk")
    predictor = load(tmp_path / "sk" / "1")
    metadata = predictor.metadata
    assert metadata.platform == "mlflow_pyfunc"
    assert [(s.name, s.datatype, s.shape) for s in metadata.inputs] == [
        (c, DataType.FP64, (-1,)) for c in models.COLUMNS
    ]
    assert [(s.name, s.datatype) for s in metadata.outputs] == [("predict", DataType.BYTES)]
    assert metadata.parameters["flavors"] == "python_function,sklearn"
    got = predict(predictor, **{c: ROWS[:, i] for i, c in enumerate(models.COLUMNS)})
    want = reference.predict(models.frame(ROWS))
    assert [v.decode() for v in got["predict"]] == list(want)


def test_the_mlmodel_wins_over_the_skops_file_beside_it(tmp_path: Path, models: Any) -> None:
    models.sklearn_model(tmp_path, "sk")
    folder = tmp_path / "sk" / "1"
    assert (folder / "model.skops").is_file()
    request = LoadRequest("sk", 1, folder, ModelSpec())
    assert RuntimeRegistry.default().choose(request).name == "mlflow"


def test_a_python_model_takes_its_columns_and_params(tmp_path: Path, models: Any) -> None:
    reference = models.pyfunc_model(tmp_path, "py")
    predictor = load(tmp_path / "py" / "1")
    metadata = predictor.metadata
    assert [(s.name, s.datatype) for s in metadata.inputs] == [
        ("x", DataType.FP64),
        ("count", DataType.INT64),
        ("name", DataType.BYTES),
    ]
    assert [(s.name, s.datatype) for s in metadata.outputs] == [
        ("total", DataType.FP64),
        ("greeting", DataType.BYTES),
    ]
    params = json.loads(str(metadata.parameters["params"]))
    assert params == [{"name": "scale", "default": 1.0, "shape": None, "type": "double"}]
    example = models.PYFUNC_EXAMPLE
    got = predict(
        predictor,
        {"scale": 3.0, "unrelated": "ignored"},
        x=example["x"].to_numpy(),
        count=example["count"].to_numpy(),
        name=np.array(["ann", "bob"]),
    )
    want = reference.predict(example, params={"scale": 3.0})
    np.testing.assert_array_equal(got["total"], want["total"].to_numpy())
    assert [g.decode() for g in got["greeting"]] == list(want["greeting"])


def test_a_model_without_a_signature_is_refused_naming_the_fix(tmp_path: Path, models: Any) -> None:
    models.pyfunc_model(tmp_path, "nosig")
    path = tmp_path / "nosig" / "1" / "MLmodel"
    import yaml

    document = yaml.safe_load(path.read_text())
    del document["signature"]
    path.write_text(yaml.safe_dump(document))
    with pytest.raises(ModelConfigError, match=r"has no signature.*infer_signature"):
        load(path.parent)


def test_a_pickled_python_model_loads_only_when_trusted(
    tmp_path: Path, models: Any, caplog: pytest.LogCaptureFixture
) -> None:
    folder = models.pickled_pyfunc_model(tmp_path, "pickled")
    with pytest.raises(ModelConfigError, match=r"holds pickles \(python_model.pkl\).*trust_pickle"):
        load(folder)
    with caplog.at_level(logging.WARNING):
        predictor = load(folder, runtime_options={"trust_pickle": True})
    assert "trust_pickle" in caplog.text
    spec = predictor.metadata.inputs[0]
    assert (spec.name, spec.datatype, spec.shape) == ("input", DataType.FP32, (-1, 3))
    rows = ROWS[:, :3].astype(np.float32)
    np.testing.assert_array_equal(predict(predictor, input=rows)["predict"], rows * 2)


def test_skops_types_the_mlmodel_trusts_must_be_listed_in_model_yaml(
    tmp_path: Path, models: Any
) -> None:
    models.sklearn_model(tmp_path, "sk")
    path = tmp_path / "sk" / "1" / "MLmodel"
    text = path.read_text().replace("skops_trusted_types: null", "skops_trusted_types: [os.system]")
    path.write_text(text)
    with pytest.raises(ModelConfigError, match=r"trust os\.system.*trusted_types"):
        load(path.parent)


def test_a_missing_dependency_is_a_load_error_naming_it(tmp_path: Path, models: Any) -> None:
    folder = models.missing_dependency_model(tmp_path, "needy")
    with pytest.raises(ModelLoadError, match="needs the package 'serval_absent_package'"):
        load(folder)


def test_runtime_options_are_checked(tmp_path: Path, models: Any) -> None:
    models.pyfunc_model(tmp_path, "py")
    with pytest.raises(ModelConfigError, match="runtime_options"):
        load(tmp_path / "py" / "1", runtime_options={"trust_pickles": True})


# -- runtime: native on MLflow's flavors ---------------------------------------------------


def test_native_serves_the_sklearn_flavor_with_serval_s_runtime(
    tmp_path: Path, models: Any
) -> None:
    reference = models.sklearn_model(tmp_path, "sk")
    predictor = load(tmp_path / "sk" / "1", runtime="native")
    assert predictor.metadata.platform == "sklearn_skops"
    assert predictor.metadata.parameters["feature_names"] == "a,b,c,d"
    got = predict(predictor, input=ROWS)
    assert [v.decode() for v in got["predict"]] == list(reference.predict(models.frame(ROWS)))


def test_native_serves_the_xgboost_and_lightgbm_flavors(tmp_path: Path, models: Any) -> None:
    xgb = pytest.importorskip("xgboost")
    lgb = pytest.importorskip("lightgbm")
    import mlflow.lightgbm
    import mlflow.xgboost

    features, classes = training_data()
    booster = xgb.train(
        {"max_depth": 2, "objective": "reg:squarederror"},
        xgb.DMatrix(features, label=features[:, 1]),
        num_boost_round=5,
    )
    mlflow.xgboost.save_model(booster, str(tmp_path / "xgb" / "1"))
    xgb_predictor = load(tmp_path / "xgb" / "1", runtime="native")
    assert xgb_predictor.metadata.platform == "xgboost_ubj"
    np.testing.assert_allclose(
        predict(xgb_predictor, input=ROWS)["predict"], booster.predict(xgb.DMatrix(ROWS))
    )
    lgb_booster = lgb.train(
        {"objective": "regression", "verbose": -1, "min_data_in_leaf": 5},
        lgb.Dataset(features, label=features[:, 2]),
        num_boost_round=5,
    )
    mlflow.lightgbm.save_model(lgb_booster, str(tmp_path / "lgb" / "1"))
    lgb_predictor = load(tmp_path / "lgb" / "1", runtime="native")
    assert lgb_predictor.metadata.platform.startswith("lightgbm")
    np.testing.assert_allclose(
        predict(lgb_predictor, input=ROWS)["predict"], lgb_booster.predict(ROWS)
    )
    assert classes.size  # the data had labels too; only regression is needed here


def test_a_cloudpickled_sklearn_model_needs_trust_both_ways(tmp_path: Path, models: Any) -> None:
    import mlflow.sklearn
    from mlflow.models import infer_signature
    from sklearn.linear_model import Ridge

    features, _ = training_data()
    model = Ridge().fit(models.frame(features), features[:, 0])
    folder = tmp_path / "ridge" / "1"
    signature = infer_signature(models.frame(features), model.predict(models.frame(features)))
    mlflow.sklearn.save_model(
        model, str(folder), serialization_format="cloudpickle", signature=signature
    )
    assert (folder / "model.pkl").is_file()
    for runtime in ("mlflow", "native"):
        with pytest.raises(ModelConfigError, match="trust_pickle"):
            load(folder, runtime=runtime)
    trusted = {"trust_pickle": True}
    pyfunc = load(folder, runtime_options=trusted)
    got = predict(pyfunc, **{c: ROWS[:, i] for i, c in enumerate(models.COLUMNS)})
    np.testing.assert_allclose(got["predict"], model.predict(models.frame(ROWS)))
    native = load(folder, runtime="native", runtime_options=trusted)
    assert native.metadata.platform == "sklearn_pickle"
    np.testing.assert_allclose(
        predict(native, input=ROWS)["predict"], model.predict(models.frame(ROWS))
    )
