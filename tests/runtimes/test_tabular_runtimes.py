"""scikit-learn, XGBoost and LightGBM runtimes in-process: safe loading, datatypes inferred
from the estimator, predictions equal to the library's, and output selection."""

# ruff: noqa: PLC0415 - frameworks are imported after pytest.importorskip

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from serval.core.errors import InvalidInputError, ModelConfigError
from serval.core.lifecycle.loader import LoadRequest
from serval.core.model_spec import ModelSpec
from serval.core.servable import Predictor
from serval.core.tensors.datatypes import DataType
from serval.core.types import InferenceRequest, RequestedOutput, Tensor
from serval.runtimes.registry import RuntimeRegistry
from tests.runtimes.builders import training_data, version_folder

FEATURES, CLASSES = training_data()
ROWS = np.random.default_rng(7).normal(size=(9, 4))


def load(folder: Path, **spec: Any) -> Predictor:
    request = LoadRequest(folder.parent.name, 1, folder, ModelSpec(**spec))
    return RuntimeRegistry.default()(request).load()


def predict(
    predictor: Predictor, rows: np.ndarray = ROWS, outputs: list[str] | None = None
) -> dict[str, np.ndarray]:
    spec = predictor.metadata.inputs[0]
    request = InferenceRequest(
        "m",
        [Tensor(spec.name, spec.datatype, rows.astype(spec.datatype.numpy_dtype))],
        outputs=None if outputs is None else [RequestedOutput(n) for n in outputs],
    )
    return {t.name: t.data for t in predictor.predict(request).outputs}


def output_types(predictor: Predictor) -> dict[str, tuple[DataType, tuple[int, ...]]]:
    return {s.name: (s.datatype, s.shape) for s in predictor.metadata.outputs}


# -- scikit-learn ------------------------------------------------------------------------


def test_skops_refuses_types_it_does_not_trust_until_listed(tmp_path: Path) -> None:
    sio = pytest.importorskip("skops.io")
    from sklearn.ensemble import RandomForestClassifier

    model = RandomForestClassifier(n_estimators=3, max_depth=2, random_state=0)
    model.fit(FEATURES, CLASSES)
    folder = version_folder(tmp_path, "forest")
    sio.dump(model, folder / "model.skops")
    with pytest.raises(ModelConfigError) as raised:
        load(folder)
    assert "sklearn.tree._tree.Tree" in str(raised.value)
    assert "runtime_options.trusted_types" in str(raised.value)
    trusted = load(folder, runtime_options={"trusted_types": ["sklearn.tree._tree.Tree"]})
    np.testing.assert_array_equal(predict(trusted)["predict"], model.predict(ROWS))
    assert output_types(trusted) == {
        "predict": (DataType.INT64, (-1,)),
        "predict_proba": (DataType.FP64, (-1, 3)),
    }


def test_trusted_pickle_loads_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    joblib = pytest.importorskip("joblib")
    from sklearn.linear_model import LinearRegression

    model = LinearRegression().fit(FEATURES, np.column_stack([FEATURES[:, 0], FEATURES[:, 1]]))
    folder = version_folder(tmp_path, "pickled")
    joblib.dump(model, folder / "model.pkl")
    with pytest.raises(ModelConfigError, match=r"refusing to load model\.pkl"):
        load(folder)
    with caplog.at_level(logging.WARNING, logger="serval.runtimes.sklearn"):
        predictor = load(folder, runtime_options={"trust_pickle": True})
    assert "runtime_options.trust_pickle: true" in caplog.text
    assert "arbitrary code" in caplog.text
    assert predictor.metadata.platform == "sklearn_pickle"
    assert output_types(predictor) == {"predict": (DataType.FP64, (-1, 2))}  # two targets
    np.testing.assert_array_equal(predict(predictor)["predict"], model.predict(ROWS))


def test_runtime_options_are_checked(tmp_path: Path) -> None:
    pytest.importorskip("sklearn")
    folder = version_folder(tmp_path, "m")
    (folder / "model.skops").write_bytes(b"")
    with pytest.raises(ModelConfigError, match="runtime_options: trust_pickel: unknown key"):
        load(folder, runtime_options={"trust_pickel": True})


def test_only_the_selected_outputs_are_computed(tmp_path: Path) -> None:
    pytest.importorskip("sklearn")
    from sklearn.linear_model import LogisticRegression

    from serval.runtimes.sklearn import sklearn_predictor

    calls: list[str] = []

    class Spy(LogisticRegression):  # type: ignore[misc]
        def predict(self, x: Any) -> Any:
            calls.append("predict")
            return super().predict(x)

        def predict_proba(self, x: Any) -> Any:
            calls.append("predict_proba")
            return super().predict_proba(x)

    model = Spy().fit(FEATURES, CLASSES == 1)
    request = LoadRequest("m", 1, tmp_path, ModelSpec())
    predictor = sklearn_predictor(model, "sklearn_skops", request)
    assert output_types(predictor)["predict"] == (DataType.BOOL, (-1,))
    assert list(predict(predictor, outputs=["predict_proba"])) == ["predict_proba"]
    assert calls == ["predict_proba"]


def test_input_datatype_may_be_declared_fp32(tmp_path: Path) -> None:
    sio = pytest.importorskip("skops.io")
    from sklearn.linear_model import Ridge

    model = Ridge().fit(FEATURES, FEATURES[:, 3])
    folder = version_folder(tmp_path, "ridge")
    sio.dump(model, folder / "model.skops")
    predictor = load(folder, inputs=[{"name": "input", "datatype": "FP32"}])
    assert predictor.metadata.inputs[0].datatype is DataType.FP32
    rows = ROWS.astype(np.float32)
    np.testing.assert_array_equal(predict(predictor, rows)["predict"], model.predict(rows))
    with pytest.raises(ModelConfigError, match="outputs: nope not in the model"):
        load(folder, outputs=[{"name": "nope", "datatype": "FP32"}])


def test_nan_is_rejected_as_invalid_input(tmp_path: Path) -> None:
    sio = pytest.importorskip("skops.io")
    from sklearn.linear_model import Ridge

    folder = version_folder(tmp_path, "ridge")
    sio.dump(Ridge().fit(FEATURES, FEATURES[:, 3]), folder / "model.skops")
    with pytest.raises(InvalidInputError, match=r"scikit-learn rejected the input: .*NaN"):
        predict(load(folder), np.full((1, 4), np.nan))


# -- XGBoost -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("objective", "labels", "proba"),
    [
        ("binary:logistic", CLASSES > 0, True),
        ("multi:softprob", CLASSES, True),
        ("multi:softmax", CLASSES, True),
        ("reg:squarederror", FEATURES[:, 0], False),
    ],
)
def test_xgboost_equals_the_scikit_learn_api(
    tmp_path: Path, objective: str, labels: np.ndarray, proba: bool
) -> None:
    xgb = pytest.importorskip("xgboost")
    kind = xgb.XGBRegressor if objective.startswith("reg") else xgb.XGBClassifier
    model = kind(n_estimators=4, max_depth=2, objective=objective).fit(FEATURES, labels)
    folder = version_folder(tmp_path, "xgb")
    model.save_model(folder / "model.ubj")
    got = predict(load(folder))
    np.testing.assert_array_equal(got["predict"], model.predict(ROWS))
    if proba:
        np.testing.assert_allclose(got["predict_proba"], model.predict_proba(ROWS), rtol=1e-6)
    else:
        assert "predict_proba" not in got


def test_xgboost_uses_the_best_iteration_and_feature_names(tmp_path: Path) -> None:
    xgb = pytest.importorskip("xgboost")
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(FEATURES, columns=["a", "b", "c", "d"])
    model = xgb.XGBRegressor(n_estimators=50, early_stopping_rounds=2, learning_rate=0.5)
    model.fit(frame, FEATURES[:, 0], eval_set=[(frame[:20], FEATURES[:20, 1])], verbose=False)
    assert model.best_iteration < 49
    folder = version_folder(tmp_path, "xgb")
    model.save_model(folder / "model.json")
    predictor = load(folder)
    assert predictor.metadata.platform == "xgboost_json"
    assert predictor.metadata.parameters == {"feature_names": "a,b,c,d"}
    expected = model.predict(pd.DataFrame(ROWS, columns=["a", "b", "c", "d"]))
    np.testing.assert_array_equal(predict(predictor)["predict"], expected)


# -- LightGBM ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "labels"),
    [
        ("classifier", CLASSES > 0),
        ("classifier", CLASSES),
        ("regressor", FEATURES[:, 0]),
    ],
)
def test_lightgbm_equals_the_scikit_learn_api(
    tmp_path: Path, kind: str, labels: np.ndarray
) -> None:
    lgb = pytest.importorskip("lightgbm")
    estimator = lgb.LGBMClassifier if kind == "classifier" else lgb.LGBMRegressor
    model = estimator(n_estimators=4, min_child_samples=5, verbose=-1).fit(FEATURES, labels)
    folder = version_folder(tmp_path, "lgb")
    model.booster_.save_model(folder / "model.txt")
    predictor = load(folder, runtime_options={"num_threads": 1})
    assert predictor.metadata.parameters == {}  # generated Column_0... names are not reported
    got = predict(predictor)
    np.testing.assert_array_equal(got["predict"], model.predict(ROWS))
    if kind == "classifier":
        np.testing.assert_array_equal(got["predict_proba"], model.predict_proba(ROWS))
        assert output_types(predictor)["predict"] == (DataType.INT64, (-1,))
    else:
        assert output_types(predictor) == {"predict": (DataType.FP64, (-1,))}
