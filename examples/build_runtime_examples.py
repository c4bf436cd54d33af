"""Builds one example model per runtime into examples/runtimes/ (or the folder given):

    pip install -e '.[all]'
    python examples/build_runtime_examples.py
    serval serve examples/runtimes

- ``sklearn``: LogisticRegression on a DataFrame (feature names), string classes; model.skops.
- ``xgboost``: XGBClassifier, 3 classes; model.ubj.
- ``lightgbm``: LGBMRegressor of petal width on the three other measurements; model.txt.
- ``python``: a keyword sentiment model (model.py) with two signatures, BYTES input, pre- and
  post-processing, run in a worker process; its source is examples/runtimes/python/1, copied.

The tabular models take ``input``, FP64 ``[-1, n_features]``. The models are trained on generated
data with fixed seeds, so the files are small and reproducible. The trained files are not in git
(.gitignore): a skops file differs at every build, so building would dirty the tree.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
import skops.io as sio
import xgboost as xgb
from sklearn.linear_model import LogisticRegression

FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
SPECIES = np.array(["setosa", "versicolor", "virginica"])

# The Python model is source, not a trained artifact: it lives once, in examples/runtimes, and
# is copied from there when the examples are built elsewhere.
PYTHON_EXAMPLE = Path(__file__).resolve().parent / "runtimes" / "python" / "1"


def flowers(seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """150 made-up flowers, 50 of each species, with iris-like measurements."""
    rng = np.random.default_rng(seed)
    centres = np.array([[5.0, 3.4, 1.5, 0.2], [5.9, 2.8, 4.3, 1.3], [6.6, 3.0, 5.6, 2.0]])
    species = np.repeat(np.arange(3), 50)
    rows = centres[species] + rng.normal(scale=0.3, size=(150, 4))
    return pd.DataFrame(rows, columns=FEATURES), species


def folder(root: Path, name: str) -> Path:
    path = root / name / "1"
    path.mkdir(parents=True, exist_ok=True)
    return path


def main(root: Path) -> None:
    frame, species = flowers()
    sklearn_model = LogisticRegression(max_iter=500).fit(frame, SPECIES[species])
    sio.dump(sklearn_model, folder(root, "sklearn") / "model.skops")

    xgb_model = xgb.XGBClassifier(n_estimators=8, max_depth=2, random_state=0)
    xgb_model.fit(frame.to_numpy(), species)
    xgb_model.save_model(folder(root, "xgboost") / "model.ubj")

    lgb_model = lgb.LGBMRegressor(n_estimators=8, num_leaves=4, random_state=0, verbose=-1)
    lgb_model.fit(frame.to_numpy()[:, :3], frame["petal_width"].to_numpy())
    lgb_model.booster_.save_model(folder(root, "lightgbm") / "model.txt")

    python = folder(root, "python")
    if python.resolve() != PYTHON_EXAMPLE:
        for name in ("model.py", "words.txt"):
            shutil.copyfile(PYTHON_EXAMPLE / name, python / name)
    (root / "python" / "model.yaml").write_text(
        "runtime_options:\n  isolation: process  # a slow or crashing model cannot stall the "
        "server\n  workers: 2\n"
    )
    print(f"wrote runtime examples to {root}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "runtimes")
