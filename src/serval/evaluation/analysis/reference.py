"""The drift reference: the training inputs, read from the Parquet file ``monitoring.reference``
names, and the feature map that reads the same features out of logged requests.

Which reference column is which feature:

- a model with one 2-D input ``[-1, n]``: its n columns are the reference's first n columns
  that are not the label column, in file order, and take their names (columns after the n-th
  are not compared: an id, a timestamp); a width of -1 takes every such column;
- otherwise every input is 1-D (``[-1]`` or ``[-1, 1]``) and is the reference column of the
  same name;
- the label column (named as the prediction output, else ``label``; optional) is the
  reference distribution of the prediction, compared under the subject ``prediction``.

Numeric columns are compared as numbers (float64), string, categorical and boolean columns as
categories; a classifier's label column is categorical whatever its type.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from serval.core.types import TensorSpec
from serval.evaluation.analysis.outputs import PredictionOutputs
from serval.evaluation.analysis.row_values import as_categories, as_numbers, row_values
from serval.evaluation.recording.tensor_log import LoggedTensor, decode_tensors
from serval.storage.evaluation import LoggedPrediction

ColumnKind = Literal["numeric", "categorical"]
PREDICTION = "prediction"  # the drift subject of the prediction (alerts name it so)
LABEL = "label"  # the label column's name when the prediction output's name is not a column


class ReferenceFileError(ValueError):
    """The reference cannot be used: the reason names the file and the column."""


@dataclass(frozen=True, slots=True)
class Column:
    """One reference column without its missing values: float64 numbers, or category texts in
    an object array (``row_values.category_text``)."""

    name: str
    kind: ColumnKind
    values: np.ndarray[Any, Any]


@dataclass(frozen=True, slots=True)
class FeatureSource:
    """Where a feature is in a request: input ``input``, column ``index`` of a 2-D input (None
    for a 1-D input)."""

    feature: str
    input: str
    index: int | None
    kind: ColumnKind


@dataclass(frozen=True, slots=True)
class FeatureMap:
    """Reads the reference's features (and the prediction) out of logged requests."""

    sources: tuple[FeatureSource, ...]
    prediction: str | None  # the output compared with the label column; None: not compared
    prediction_kind: ColumnKind = "categorical"

    def columns(self, records: Sequence[LoggedPrediction]) -> dict[str, np.ndarray[Any, Any]]:
        """Per feature (and ``prediction``), one value per row of ``records``: float64 with NaN
        for missing numbers, or category texts with None. A record whose tensor is missing or
        of another width adds nothing to that feature."""
        parts: dict[str, list[np.ndarray[Any, Any]]] = {s.feature: [] for s in self.sources}
        predictions: list[np.ndarray[Any, Any]] = []
        for record in records:
            inputs = decode_tensors(record.inputs)
            for source in self.sources:
                values = _feature_values(inputs.get(source.input), source)
                if values is not None:
                    parts[source.feature].append(_convert(values, source.kind))
            if self.prediction is not None:
                output = decode_tensors(record.outputs).get(self.prediction)
                if output is not None and _fits_rows(output):
                    values = row_values(output, self.prediction)
                    predictions.append(_convert(values, self.prediction_kind))
        columns = {
            feature: _concat(arrays, _kind(self, feature)) for feature, arrays in parts.items()
        }
        if self.prediction is not None:
            columns[PREDICTION] = _concat(predictions, self.prediction_kind)
        return columns


@dataclass(frozen=True, slots=True)
class Reference:
    """The reference's features by name, its label column, and how to read both from logs."""

    path: Path
    features: dict[str, Column]
    label: Column | None
    feature_map: FeatureMap

    def subjects(self) -> dict[str, Column]:
        """What drift compares, by subject: each feature, and ``prediction`` when the reference
        has a label column compared with the prediction."""
        subjects = dict(self.features)
        if self.label is not None and self.feature_map.prediction is not None:
            subjects[PREDICTION] = self.label
        return subjects


def load_reference(
    path: Path,
    inputs: Sequence[TensorSpec],
    outputs: PredictionOutputs | None = None,
    leave_out: Collection[str] = (),
) -> Reference:
    """Read the reference at ``path`` and map it to the model's ``inputs`` (those in
    ``leave_out``, its keys, aside). ``outputs``: the prediction the label column is compared
    with (None: the label column is left out, not compared).

    Raises ReferenceFileError naming the file (and the column) when the file is missing,
    unreadable or empty, or its columns do not fit the inputs."""
    from serval.evaluation.analysis.reference_file import read_columns  # noqa: PLC0415 - pyarrow

    table = read_columns(path)
    where = f"reference {path.name}"
    label_names = ([outputs.prediction] if outputs is not None else []) + [LABEL]
    label_name = next((name for name in label_names if name in table), None)
    feature_names = [name for name in table if name != label_name]
    model_inputs = [spec for spec in inputs if spec.name not in leave_out]
    features: dict[str, Column] = {}
    sources: list[FeatureSource] = []
    for feature, input_name, index in _places(where, model_inputs, feature_names):
        column = table.column(feature)
        features[feature] = column
        sources.append(FeatureSource(feature, input_name, index, column.kind))
    label: Column | None = None
    compared: str | None = None
    if label_name is not None and outputs is not None:
        if PREDICTION in features:
            raise ReferenceFileError(
                f"{where}: feature {PREDICTION!r} has the name drift gives the prediction; "
                "rename the input"
            )
        label = table.column(
            label_name, "categorical" if outputs.task == "classification" else "numeric"
        )
        compared = outputs.prediction
    return Reference(
        path=path,
        features=features,
        label=label,
        feature_map=FeatureMap(
            tuple(sources), compared, label.kind if label is not None else "categorical"
        ),
    )


def _places(
    where: str, inputs: Sequence[TensorSpec], columns: Sequence[str]
) -> list[tuple[str, str, int | None]]:
    """Per feature: its reference column's name, the input it is in, and its column in that
    input (None for a 1-D input)."""
    if not inputs:
        raise ReferenceFileError(f"{where}: the model has no inputs to compare with it")
    if len(inputs) == 1 and _width(inputs[0]) != 1:
        spec = inputs[0]
        width = _width(spec)
        if width is None:
            raise ReferenceFileError(
                f"{where}: input {spec.name!r} has shape {list(spec.shape)}; drift compares "
                "tabular inputs ([rows, columns] or [rows])"
            )
        if width == -1:
            width = len(columns)
        if len(columns) < width:
            raise ReferenceFileError(
                f"{where}: input {spec.name!r} has {width} columns but the reference has "
                f"{len(columns)} feature columns ({', '.join(columns) or 'none'})"
            )
        return [(name, spec.name, i) for i, name in enumerate(columns[:width])]
    places: list[tuple[str, str, int | None]] = []
    for spec in inputs:
        if _width(spec) != 1:
            raise ReferenceFileError(
                f"{where}: input {spec.name!r} has shape {list(spec.shape)}; with several "
                "inputs each must be one column ([rows] or [rows, 1]), named as its "
                "reference column"
            )
        if spec.name not in columns:
            raise ReferenceFileError(
                f"{where}: no column {spec.name!r} for input {spec.name!r} (columns: "
                f"{', '.join(columns) or 'none'})"
            )
        places.append((spec.name, spec.name, None))
    return places


def _width(spec: TensorSpec) -> int | None:
    """Values per row: 1 for ``[rows]`` / ``[rows, 1]``, n for ``[rows, n]``, None beyond."""
    if len(spec.shape) == 1:
        return 1
    if len(spec.shape) == 2:
        return spec.shape[1]
    return None


def _feature_values(
    tensor: LoggedTensor | None, source: FeatureSource
) -> np.ndarray[Any, Any] | None:
    if tensor is None:
        return None
    data = tensor.data
    if source.index is None:
        return row_values(tensor, source.input) if _fits_rows(tensor) else None
    if data.ndim != 2 or data.shape[1] <= source.index:
        return None
    return data[:, source.index]


def _fits_rows(tensor: LoggedTensor) -> bool:
    data = tensor.data
    return data.ndim <= 1 or (data.ndim == 2 and data.shape[1] == 1)


def _convert(values: np.ndarray[Any, Any], kind: ColumnKind) -> np.ndarray[Any, Any]:
    return as_numbers(values) if kind == "numeric" else as_categories(values)


def _concat(arrays: list[np.ndarray[Any, Any]], kind: ColumnKind) -> np.ndarray[Any, Any]:
    if arrays:
        return np.concatenate(arrays)
    return np.empty(0, dtype=np.float64 if kind == "numeric" else object)


def _kind(feature_map: FeatureMap, feature: str) -> ColumnKind:
    return next(s.kind for s in feature_map.sources if s.feature == feature)
