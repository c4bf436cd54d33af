"""Reading ground truth as the prediction it labels (docs/evaluation-methods.md#ground-truth).

A class label is read as the prediction output's datatype family, so that the label and the
prediction compare equal when they name the same class:

- integer predictions (INT*, UINT*): an integer, a float without a fraction (``1.0``) or the
  text of an integer (``"1"``) -> int;
- text predictions (BYTES): a string, or an integer (``1`` -> ``"1"``);
- float predictions (FP*, e.g. a classifier answering ``1.0``): a number or its text -> float;
- boolean predictions (BOOL): ``true`` / ``false``, ``0`` / ``1`` or their text -> bool.

A boolean never stands for an integer or text class (``true`` is not ``1``), nor a float with a
fraction for a class. A regression target is a finite number (not a boolean).
"""

from __future__ import annotations

import math
from typing import Literal

import orjson

from serval.core.feedback import JsonValue
from serval.core.tensors.datatypes import DataType
from serval.evaluation.analysis.outputs import Task
from serval.storage.evaluation import Label

Family = Literal["integer", "float", "text", "bool"]
ClassLabel = int | float | str | bool


def family(datatype: DataType | str) -> Family:
    """The family of a prediction datatype that decides how its labels are read."""
    name = str(datatype)
    if name == "BYTES":
        return "text"
    if name == "BOOL":
        return "bool"
    if name.startswith("FP"):
        return "float"
    return "integer"


def class_label(value: object, kind: Family) -> ClassLabel:
    """``value`` as a class of the family ``kind``; ValueError saying why it is not one."""
    if kind == "bool":
        return _boolean(value)
    if isinstance(value, bool):
        raise ValueError(f"{_json(value)} is a boolean, not a class of this model")
    if kind == "text":
        if isinstance(value, str):
            return value
        return str(_integer(value, "a string or an integer"))
    if kind == "float":
        return regression_value(value, allow_text=True)
    return _integer(value, "an integer")


def regression_value(value: object, allow_text: bool = False) -> float:
    """``value`` as a finite number; ValueError saying why it is not one."""
    number: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    elif allow_text and isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            number = None
    if number is None or not math.isfinite(number):
        raise ValueError(f"{_json(value)} is not a finite number")
    return number


def check_ground_truth(task: Task, datatype: DataType | str, rows: int, value: JsonValue) -> None:
    """Raise ValueError with the reason when ``value`` cannot label a prediction of ``rows``
    rows (0: not known) whose prediction output has ``datatype``: one value for a request of
    one row (or a list of one), a list of one value per row for a request of several."""
    if isinstance(value, list):
        if not value:
            raise ValueError("ground truth is an empty list (one value per row)")
        if rows and len(value) != rows:
            raise ValueError(
                f"ground truth has {len(value)} values for a request of {rows} rows (one "
                "value per row)"
            )
        for index, item in enumerate(value):
            try:
                _check_value(task, datatype, item)
            except ValueError as exc:
                raise ValueError(f"ground truth[{index}]: {exc}") from None
        return
    if rows > 1:
        raise ValueError(
            f"ground truth for a request of {rows} rows is a list of {rows} values, one per row"
        )
    try:
        _check_value(task, datatype, value)
    except ValueError as exc:
        raise ValueError(f"ground truth: {exc}") from None


def label_values(label: Label, rows: int) -> list[tuple[int, JsonValue]]:
    """The (row, value) pairs ``label`` gives a prediction of ``rows`` rows: the one row it
    names (ground truth by key), or every row (by request id). ValueError when they do not
    fit (a row past the request's, a list of another length)."""
    value: JsonValue = orjson.loads(label.value)
    if label.row is not None:
        if not 0 <= label.row < rows:
            raise ValueError(f"row {label.row} of a request of {rows} rows")
        if isinstance(value, list):
            if len(value) != 1:
                raise ValueError(f"{len(value)} values for one row")
            value = value[0]
        return [(label.row, value)]
    if isinstance(value, list):
        if len(value) != rows:
            raise ValueError(f"{len(value)} values for a request of {rows} rows")
        return list(enumerate(value))
    if rows != 1:
        raise ValueError(f"one value for a request of {rows} rows")
    return [(0, value)]


def _check_value(task: Task, datatype: DataType | str, value: object) -> None:
    if value is None:
        raise ValueError("null is not a ground truth")
    if isinstance(value, list | dict):
        raise ValueError(f"{_json(value)} is not one value")
    if task == "regression":
        regression_value(value)
    else:
        class_label(value, family(datatype))


def _integer(value: object, wanted: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        if text.lstrip("+-").isdigit():
            return int(text)
    raise ValueError(f"{_json(value)} is not {wanted} (the prediction's type)")


def _boolean(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "0", "1"):
        return value.strip().lower() in ("true", "1")
    raise ValueError(f"{_json(value)} is not a boolean (the prediction's type)")


def _json(value: object) -> str:
    try:
        text = orjson.dumps(value).decode()
    except TypeError:
        text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
