"""XGBoost: ``model.ubj`` or ``model.json`` (saved by ``Booster.save_model`` or the scikit-learn
API's ``save_model``), served by the native ``Booster``.

Predictions equal the scikit-learn API's: a classifier's ``predict`` is the class index
(``XGBClassifier.predict``), ``predict_proba`` the class probabilities; other objectives have
``predict`` only (``Booster.predict``). The best iteration of early stopping is honoured.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xgboost as xgb
from pydantic import BaseModel, ConfigDict, Field

from serval.core.errors import ModelLoadError
from serval.core.lifecycle.loader import LoadRequest
from serval.core.tensors.datatypes import DataType
from serval.core.types import TensorSpec
from serval.runtimes.options import parse_runtime_options, spec_file
from serval.runtimes.tabular import (
    PREDICT,
    PREDICT_PROBA,
    TabularPredictor,
    build_metadata,
    feature_names_parameter,
    input_spec,
    warmed_up,
)

ARTIFACTS = ("model.ubj", "model.json")
_PROBABILISTIC = ("binary:logistic", "multi:softprob", "multi:softmax")


class XGBoostOptions(BaseModel):
    """``runtime_options`` of an XGBoost model in ``model.yaml``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    nthread: int = Field(default=0, ge=0, description="Threads per prediction; 0: XGBoost's.")


class XGBoostLoader:
    def __init__(self, request: LoadRequest, *, artifact: Path | None = None) -> None:
        """``artifact``: the file to load, where a wrapper knows it (an MLflow model's)."""
        self._request = request
        self._artifact = artifact
        self._options = parse_runtime_options(XGBoostOptions, request)

    def load(self) -> TabularPredictor:
        folder = self._request.path
        candidates = [self._artifact] if self._artifact else [folder / n for n in ARTIFACTS]
        path = next((path for path in candidates if path.is_file()), None)
        if path is None:
            raise ModelLoadError(f"no XGBoost model in {folder} (expected model.ubj or model.json)")
        try:
            booster = xgb.Booster(model_file=str(path))
        except xgb.core.XGBoostError as exc:
            raise ModelLoadError(f"XGBoost cannot read {path.name}: {exc}") from exc
        if self._options.nthread:
            booster.set_param({"nthread": self._options.nthread})
        platform = f"xgboost_{path.suffix[1:]}"
        return warmed_up(xgboost_predictor(booster, platform, self._request), self._request.spec)


def xgboost_predictor(
    booster: xgb.Booster, platform: str, request: LoadRequest
) -> TabularPredictor:
    learner = json.loads(booster.save_config())["learner"]
    objective: str = learner["objective"]["name"]
    params = learner["learner_model_param"]
    n_classes = max(int(params.get("num_class", "0")), 2)
    n_targets = int(params.get("num_target", "1"))
    best = booster.attr("best_iteration")
    iterations = (0, int(best) + 1) if best is not None else (0, 0)

    if objective.startswith(("binary:", "multi:")):
        outputs = [TensorSpec(PREDICT, DataType.INT64, (-1,))]
        if objective in _PROBABILISTIC:
            outputs.append(TensorSpec(PREDICT_PROBA, DataType.FP32, (-1, n_classes)))
    else:
        shape = (-1,) if n_targets == 1 else (-1, n_targets)
        outputs = [TensorSpec(PREDICT, DataType.FP32, shape)]
    metadata = build_metadata(
        platform,
        [input_spec(booster.num_features())],
        outputs,
        request.spec,
        spec_file(request),
        feature_names_parameter(booster.feature_names),
    )

    def run(rows: np.ndarray[Any, Any], margin: bool = False) -> np.ndarray[Any, Any]:
        kind = "margin" if margin else "value"
        result: np.ndarray[Any, Any] = booster.inplace_predict(
            rows, iteration_range=iterations, predict_type=kind
        )
        return result

    def compute(rows: np.ndarray[Any, Any], wanted: Sequence[str]) -> Mapping[str, Any]:
        if not objective.startswith(("binary:", "multi:")):
            return {PREDICT: run(rows)}
        if objective == "multi:softmax":
            results: dict[str, Any] = {}
            if PREDICT in wanted:
                results[PREDICT] = run(rows)
            if PREDICT_PROBA in wanted:
                results[PREDICT_PROBA] = _softmax(run(rows, margin=True))
            return results
        scores = run(rows)
        if scores.ndim == 2:  # multi:softprob
            return {PREDICT: np.argmax(scores, axis=1), PREDICT_PROBA: scores}
        return {PREDICT: scores > 0.5, PREDICT_PROBA: np.column_stack([1 - scores, scores])}

    return TabularPredictor(metadata, compute, "XGBoost", booster, (ValueError, TypeError))


def _softmax(margins: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    shifted = np.exp(margins - margins.max(axis=1, keepdims=True))
    result: np.ndarray[Any, Any] = shifted / shifted.sum(axis=1, keepdims=True)
    return result
