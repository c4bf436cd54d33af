"""scikit-learn: ``model.skops`` (safe by default), or a pickle only when trusted.

``model.skops`` loads only the types skops trusts plus those ``runtime_options.trusted_types``
lists. ``model.joblib`` / ``model.pkl`` are pickles, which run arbitrary code when loaded: serval
refuses them unless ``runtime_options.trust_pickle`` is true (docs/runtimes/pickle-safety.md).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import skops.io as sio
from pydantic import BaseModel, ConfigDict, Field
from sklearn.base import is_classifier

from serval.core.errors import ModelConfigError, ModelLoadError
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
    label_datatype,
    warmed_up,
)

logger = logging.getLogger(__name__)

SKOPS = "model.skops"
PICKLES = ("model.joblib", "model.pkl")
PLATFORM_SKOPS = "sklearn_skops"
PLATFORM_PICKLE = "sklearn_pickle"


class SklearnOptions(BaseModel):
    """``runtime_options`` of a scikit-learn model in ``model.yaml``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    trust_pickle: bool = Field(
        default=False,
        description="Load model.joblib / model.pkl. A pickle runs arbitrary code when loaded: "
        "set this only for files you produced or otherwise trust.",
    )
    trusted_types: tuple[str, ...] = Field(
        default=(),
        description="Types a model.skops file may hold beyond those skops trusts by default, "
        "e.g. sklearn.tree._tree.Tree.",
    )


class SklearnLoader:
    def __init__(self, request: LoadRequest, *, artifact: Path | None = None) -> None:
        """``artifact``: the file to load, where a wrapper knows it (an MLflow model's);
        else the first of ``model.skops``, ``model.joblib``, ``model.pkl`` in the folder."""
        self._request = request
        self._artifact = artifact
        self._options = parse_runtime_options(SklearnOptions, request)

    def load(self) -> TabularPredictor:
        folder = self._request.path
        skops = self._artifact if self._artifact is not None else folder / SKOPS
        if skops.suffix == ".skops" and skops.is_file():
            model, platform = self._load_skops(skops), PLATFORM_SKOPS
        else:
            candidates = [self._artifact] if self._artifact else [folder / n for n in PICKLES]
            pickle = next((path for path in candidates if path.is_file()), None)
            if pickle is None:
                names = ", ".join((SKOPS, *PICKLES))
                raise ModelLoadError(f"no scikit-learn model in {folder} (expected one of {names})")
            model, platform = self._load_pickle(pickle), PLATFORM_PICKLE
        if not callable(getattr(model, "predict", None)):
            raise ModelLoadError(f"the object loaded is a {type(model).__name__}, not a model")
        return warmed_up(sklearn_predictor(model, platform, self._request), self._request.spec)

    def _load_skops(self, path: Path) -> Any:
        try:
            untrusted = sio.get_untrusted_types(file=path)
        except Exception as exc:
            raise ModelLoadError(f"{path.name} is not a readable skops file: {exc}") from exc
        refused = [name for name in untrusted if name not in self._options.trusted_types]
        if refused:
            raise ModelConfigError(
                f"{path.name} holds types that skops does not trust by default: "
                f"{', '.join(refused)}. If you trust this file, list them in model.yaml under "
                f"runtime_options.trusted_types"
            )
        return sio.load(path, trusted=untrusted)

    def _load_pickle(self, path: Path) -> Any:
        if not self._options.trust_pickle:
            raise ModelConfigError(
                f"refusing to load {path.name}: it is a pickle, and loading a pickle runs any "
                f"code it contains. Save the model with skops as model.skops, or, if you trust "
                f"this file, set runtime_options.trust_pickle: true in model.yaml "
                f"(see docs/runtimes/pickle-safety.md)"
            )
        # Only model.yaml can set it: a load request's override may not (core.load_override).
        logger.warning(
            "model %s version %d: loading the pickle %s because %s sets "
            "runtime_options.trust_pickle: true; a pickle can run arbitrary code",
            self._request.name,
            self._request.version,
            path,
            spec_file(self._request),
        )
        return joblib.load(path)


def sklearn_predictor(model: Any, platform: str, request: LoadRequest) -> TabularPredictor:
    """Outputs ``predict`` and, for classifiers, ``predict_proba``."""
    n_features = getattr(model, "n_features_in_", None)
    names = getattr(model, "feature_names_in_", None)
    feature_names = [str(n) for n in names] if names is not None else None
    outputs = [TensorSpec(PREDICT, *_predict_type(model))]
    classes = getattr(model, "classes_", None) if is_classifier(model) else None
    if isinstance(classes, np.ndarray) and callable(getattr(model, "predict_proba", None)):
        outputs.append(TensorSpec(PREDICT_PROBA, DataType.FP64, (-1, len(classes))))
    metadata = build_metadata(
        platform,
        [input_spec(n_features)],
        outputs,
        request.spec,
        spec_file(request),
        feature_names_parameter(feature_names),
    )
    methods = {spec.name: getattr(model, spec.name) for spec in metadata.outputs}

    def compute(rows: np.ndarray[Any, Any], wanted: Sequence[str]) -> Mapping[str, Any]:
        # A model fitted on a DataFrame wants its column names back (ColumnTransformer may
        # select by name, and scikit-learn warns without them).
        frame = pd.DataFrame(rows, columns=feature_names) if feature_names else rows
        return {name: methods[name](frame) for name in wanted}

    return TabularPredictor(metadata, compute, "scikit-learn", model)


def _predict_type(model: Any) -> tuple[DataType, tuple[int, ...]]:
    if is_classifier(model):
        classes = getattr(model, "classes_", None)
        if isinstance(classes, np.ndarray):
            return label_datatype(classes), (-1,)
        if isinstance(classes, list) and classes:  # one set of classes per output
            kinds = {label_datatype(np.asarray(c)) for c in classes}
            datatype = kinds.pop() if len(kinds) == 1 else DataType.BYTES
            return datatype, (-1, len(classes))
        return DataType.INT64, (-1,)
    outputs = _n_outputs(model)
    return DataType.FP64, (-1,) if outputs == 1 else (-1, outputs)


def _n_outputs(model: Any) -> int:
    final = model[-1] if hasattr(model, "steps") else model
    declared = getattr(final, "n_outputs_", None)
    if isinstance(declared, int):
        return declared
    coef = getattr(final, "coef_", None)
    if isinstance(coef, np.ndarray) and coef.ndim == 2 and coef.shape[0] > 1:
        return int(coef.shape[0])
    return 1
