"""MLflow models saved by the tests into a model repository (no tracking server).

Each builder writes ``<repo>/<name>/1/`` with ``mlflow.*.save_model`` and returns the model
loaded back in-process by MLflow itself, whose predictions the server must equal. Import this
module only after ``pytest.importorskip("mlflow")``.
"""

from __future__ import annotations

import textwrap
import warnings
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import mlflow.sklearn
import numpy as np
import pandas as pd
from mlflow.models import infer_signature

from tests.runtimes.builders import training_data, version_folder

COLUMNS = ["a", "b", "c", "d"]

# A PythonModel as a file ("models from code"): no pickle. It sleeps a little per call so that
# concurrent requests queue up and form batches; `scale` is a signature param.
PYFUNC_CODE = """
import time

import mlflow
import pandas as pd


class Scaler(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        time.sleep(0.005)
        scale = (params or {}).get("scale", 1.0)
        return pd.DataFrame(
            {
                "total": model_input["x"] * scale + model_input["count"],
                "greeting": "hi " + model_input["name"],
            }
        )


mlflow.models.set_model(Scaler())
"""

PYFUNC_EXAMPLE = pd.DataFrame(
    {"x": [1.0, 2.5], "count": np.array([1, 2], dtype=np.int64), "name": ["ann", "bob"]}
)


def frame(rows: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=COLUMNS)


def sklearn_model(repo: Path, name: str) -> Any:
    """LogisticRegression with string classes, fitted on a DataFrame, saved by mlflow.sklearn
    (skops, MLflow's default: no pickle) with a column-based signature."""
    from sklearn.linear_model import LogisticRegression  # noqa: PLC0415 - sklearn is optional

    features, classes = training_data()
    labels = np.array(["cat", "dog", "eel"])[classes]
    model = LogisticRegression(max_iter=200).fit(frame(features), labels)
    folder = version_folder(repo, name)
    folder.rmdir()  # save_model makes the folder itself
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        signature = infer_signature(frame(features), model.predict(frame(features)))
        mlflow.sklearn.save_model(model, str(folder), signature=signature)
    return mlflow.pyfunc.load_model(str(folder))


def pyfunc_model(repo: Path, name: str, model_yaml: str = "") -> Any:
    """The PythonModel above, with a column signature (double, long, string) and a param."""
    folder = version_folder(repo, name)
    folder.rmdir()
    code = repo / f"{name}_code.py"
    code.write_text(PYFUNC_CODE)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        output = pd.DataFrame({"total": [2.0, 4.5], "greeting": ["hi ann", "hi bob"]})
        signature = infer_signature(PYFUNC_EXAMPLE, output, params={"scale": 1.0})
        mlflow.pyfunc.save_model(str(folder), python_model=str(code), signature=signature)
    code.unlink()
    if model_yaml:
        (repo / name / "model.yaml").write_text(textwrap.dedent(model_yaml))
    return mlflow.pyfunc.load_model(str(folder))


def pickled_pyfunc_model(repo: Path, name: str, model_yaml: str = "") -> Path:
    """A PythonModel object, which MLflow cloudpickles into python_model.pkl; tensor-based."""

    class Doubler(mlflow.pyfunc.PythonModel):  # local: cloudpickle stores it by value
        def predict(self, context: Any, model_input: Any, params: Any = None) -> Any:
            return model_input * 2

    folder = version_folder(repo, name)
    folder.rmdir()
    example = np.ones((2, 3), dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        signature = infer_signature(example, example * 2)
        mlflow.pyfunc.save_model(str(folder), python_model=Doubler(), signature=signature)
    if model_yaml:
        (repo / name / "model.yaml").write_text(textwrap.dedent(model_yaml))
    return folder


def missing_dependency_model(repo: Path, name: str) -> Path:
    """The PythonModel, whose code then imports a package that is not installed."""
    pyfunc_model(repo, name)
    folder = repo / name / "1"
    code = next(folder.glob("*_code.py"))
    code.write_text("import serval_absent_package  # noqa: F401\n" + code.read_text())
    return folder
