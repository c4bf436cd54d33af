"""Tiny models of every runtime, trained on generated data and written into a model repository.

Each builder writes ``<repo>/<name>/1/...`` and returns a function that gives the framework's
own predictions for some rows, as ``{output name: array}``. Frameworks are imported inside the
builders so that a missing extra only skips the cases that need it.
"""

# ruff: noqa: PLC0415 - imports inside builders, on purpose (above)

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

N_FEATURES = 4
Expected = Callable[[np.ndarray], dict[str, Any]]


def training_data(rows: int = 80, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(rows, N_FEATURES))
    classes = (features[:, 0] > 0).astype(int) + (features[:, 1] > 0.5).astype(int)
    return features, classes


def version_folder(repo: Path, name: str, version: int = 1) -> Path:
    folder = repo / name / str(version)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def sklearn_classifier(repo: Path, name: str) -> Expected:
    """LogisticRegression fitted on a DataFrame (feature names) with string classes, as skops."""
    import pandas as pd
    import skops.io as sio
    from sklearn.linear_model import LogisticRegression

    features, classes = training_data()
    columns = ["a", "b", "c", "d"]
    labels = np.array(["cat", "dog", "eel"])[classes]
    model = LogisticRegression(max_iter=200).fit(pd.DataFrame(features, columns=columns), labels)
    sio.dump(model, version_folder(repo, name) / "model.skops")

    def expected(rows: np.ndarray) -> dict[str, Any]:
        frame = pd.DataFrame(rows, columns=columns)
        return {"predict": model.predict(frame), "predict_proba": model.predict_proba(frame)}

    return expected


def sklearn_pickled_regressor(repo: Path, name: str) -> Expected:
    """A GradientBoostingRegressor saved with joblib; model.yaml trusts the pickle."""
    import joblib
    from sklearn.ensemble import GradientBoostingRegressor

    features, _ = training_data()
    model = GradientBoostingRegressor(n_estimators=5, max_depth=2).fit(features, features[:, 2])
    joblib.dump(model, version_folder(repo, name) / "model.joblib")
    (repo / name / "model.yaml").write_text("runtime_options:\n  trust_pickle: true\n")
    return lambda rows: {"predict": model.predict(rows)}


def untrusted_pickle(repo: Path, name: str) -> None:
    """A pickle and no trust_pickle: the server must refuse it."""
    import joblib
    from sklearn.linear_model import LinearRegression

    features, _ = training_data()
    joblib.dump(
        LinearRegression().fit(features, features[:, 0]),
        version_folder(repo, name) / "model.joblib",
    )


def xgboost_classifier(repo: Path, name: str) -> Expected:
    """XGBClassifier (scikit-learn API, 3 classes) saved as model.ubj."""
    import xgboost as xgb

    features, classes = training_data()
    model = xgb.XGBClassifier(n_estimators=5, max_depth=2).fit(features, classes)
    model.save_model(version_folder(repo, name) / "model.ubj")
    return lambda rows: {"predict": model.predict(rows), "predict_proba": model.predict_proba(rows)}


def xgboost_booster_regressor(repo: Path, name: str) -> Expected:
    """A Booster from xgb.train (native API, regression) saved as model.json."""
    import xgboost as xgb

    features, _ = training_data()
    booster = xgb.train(
        {"max_depth": 2, "objective": "reg:squarederror"},
        xgb.DMatrix(features, label=features[:, 1]),
        num_boost_round=5,
    )
    booster.save_model(version_folder(repo, name) / "model.json")
    return lambda rows: {"predict": booster.predict(xgb.DMatrix(rows))}


def lightgbm_classifier(repo: Path, name: str) -> Expected:
    """LGBMClassifier (binary) saved through its Booster as model.txt."""
    import lightgbm as lgb

    features, classes = training_data()
    model = lgb.LGBMClassifier(n_estimators=5, min_child_samples=5, verbose=-1)
    model.fit(features, (classes > 0).astype(int))
    model.booster_.save_model(version_folder(repo, name) / "model.txt")
    return lambda rows: {"predict": model.predict(rows), "predict_proba": model.predict_proba(rows)}


PYTHON_MODEL = '''
import numpy as np

from serval import ServingModel, TensorInfo


class Model(ServingModel):
    """Sums each row and scales it by model.yaml's parameter ``scale``."""

    inputs = [TensorInfo("input", "FP64", [-1, 4])]
    outputs = [TensorInfo("total", "FP64"), TensorInfo("scaled", "FP64", [-1, 4])]

    def load(self):
        self.scale = float(self.parameters.get("scale", 1.0))

    def predict(self, data):
        rows = data["input"]
        return {"total": rows.sum(axis=1), "scaled": rows * self.scale}
'''


def python_model(repo: Path, name: str) -> Expected:
    (version_folder(repo, name) / "model.py").write_text(PYTHON_MODEL)
    (repo / name / "model.yaml").write_text("parameters:\n  scale: 2.5\n")
    return lambda rows: {"total": rows.sum(axis=1), "scaled": rows * 2.5}


def onnx_linear(repo: Path, name: str) -> Expected:
    """Gemm: FP32 x [-1, 4] -> y [-1, 1]; expected from onnxruntime itself."""
    import onnxruntime as ort

    from tests.onnx_models import linear, write_model

    model = linear([1.0, 2.0, -1.0, 0.5], 0.25)
    write_model(repo, name, 1, model)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return lambda rows: {"y": session.run(["y"], {"x": rows})[0]}


def write_python_model(folder: Path, source: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.py").write_text(textwrap.dedent(source))
    return folder


def torch_scripted(repo: Path, name: str) -> Expected:
    """An nn.Module scripted to TorchScript ``model.pt``; model.yaml declares its tensors."""
    from tests.runtimes import torch_models

    return torch_models.scripted(repo, name)


def torch_exported(repo: Path, name: str, yaml: str | None = None) -> Expected:
    """The same nn.Module exported with a dynamic batch dimension to ``model.pt2``."""
    from tests.runtimes import torch_models

    return torch_models.exported(repo, name, yaml)
