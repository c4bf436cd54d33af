"""LightGBM: ``model.txt`` (``Booster.save_model``), served by the native ``Booster``.

A classifier (objective ``binary``, ``multiclass`` or ``multiclassova``) has ``predict``, the class
index as ``LGBMClassifier.predict`` gives it for labels 0..k-1 (the text format does not keep the
scikit-learn API's original labels), and ``predict_proba``; other objectives have ``predict``
only, equal to ``Booster.predict``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
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

ARTIFACT = "model.txt"
PLATFORM = "lightgbm_text"
_MULTICLASS = ("multiclass", "multiclassova", "softmax", "ova", "ovr", "multiclass_ova")


class LightGBMOptions(BaseModel):
    """``runtime_options`` of a LightGBM model in ``model.yaml``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    num_threads: int = Field(default=0, ge=0, description="Threads per prediction; 0: LightGBM's.")


class LightGBMLoader:
    def __init__(self, request: LoadRequest, *, artifact: Path | None = None) -> None:
        """``artifact``: the file to load, where a wrapper knows it (an MLflow model's)."""
        self._request = request
        self._artifact = artifact
        self._options = parse_runtime_options(LightGBMOptions, request)

    def load(self) -> TabularPredictor:
        path = self._artifact or self._request.path / ARTIFACT
        if not path.is_file():
            raise ModelLoadError(f"{path} does not exist")
        try:
            booster = lgb.Booster(model_file=str(path))
        except lgb.basic.LightGBMError as exc:
            raise ModelLoadError(f"LightGBM cannot read {path.name}: {exc}") from exc
        predictor = lightgbm_predictor(booster, self._request, self._options.num_threads)
        return warmed_up(predictor, self._request.spec)


def lightgbm_predictor(
    booster: lgb.Booster, request: LoadRequest, num_threads: int = 0
) -> TabularPredictor:
    objective = str(booster.params.get("objective", "regression")).split()[0]
    n_classes = int(booster.params.get("num_class", 1))
    names = booster.feature_name()
    generated = [f"Column_{i}" for i in range(len(names))]
    if objective == "binary":
        outputs = [
            TensorSpec(PREDICT, DataType.INT64, (-1,)),
            TensorSpec(PREDICT_PROBA, DataType.FP64, (-1, 2)),
        ]
    elif objective in _MULTICLASS:
        outputs = [
            TensorSpec(PREDICT, DataType.INT64, (-1,)),
            TensorSpec(PREDICT_PROBA, DataType.FP64, (-1, n_classes)),
        ]
    else:
        outputs = [TensorSpec(PREDICT, DataType.FP64, (-1,))]
    metadata = build_metadata(
        PLATFORM,
        [input_spec(booster.num_feature())],
        outputs,
        request.spec,
        spec_file(request),
        feature_names_parameter(names if names != generated else None),
    )
    options: dict[str, Any] = {"num_threads": num_threads} if num_threads else {}

    def compute(rows: np.ndarray[Any, Any], wanted: Sequence[str]) -> Mapping[str, Any]:
        scores = np.asarray(booster.predict(rows, **options))
        if len(outputs) == 1:
            return {PREDICT: scores}
        if scores.ndim == 1:  # binary: the probability of class 1
            scores = np.column_stack([1 - scores, scores])
        return {PREDICT: np.argmax(scores, axis=1), PREDICT_PROBA: scores}

    errors = (ValueError, TypeError, lgb.basic.LightGBMError)
    return TabularPredictor(metadata, compute, "LightGBM", booster, errors)
