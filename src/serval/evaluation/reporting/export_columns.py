"""The columns of ``serval monitor export``: what a first pass over the prediction log learns of
each logged tensor and of the ground truth, and how one record becomes cells of those columns.

A tensor's column holds one value per predicted row:

- ``[rows]`` or ``[rows, 1]`` in every record: a scalar column;
- ``[rows, n]`` (any row shape of n values) with the same n in every record: a
  ``fixed_size_list<n>`` of the row's values, flattened;
- row widths that differ between records: a ``list`` of the row's values.

Its value type is the datatype's (BYTES: string); a tensor logged with several numeric
datatypes (versions that differ) is float64, with BYTES and another datatype a string. Ground
truth is typed as its values allow (bool, int64, float64, string), else JSON text.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson
import pyarrow as pa

from serval.evaluation.analysis.ground_truth import label_values
from serval.evaluation.recording.tensor_log import LoggedTensor
from serval.storage.evaluation import Label

Side = Literal["input", "output"]
_ARROW_TYPES: dict[str, pa.DataType] = {
    "BOOL": pa.bool_(),
    "UINT8": pa.uint8(),
    "UINT16": pa.uint16(),
    "UINT32": pa.uint32(),
    "UINT64": pa.uint64(),
    "INT8": pa.int8(),
    "INT16": pa.int16(),
    "INT32": pa.int32(),
    "INT64": pa.int64(),
    "FP16": pa.float32(),  # Parquet readers handle float32 everywhere, half floats rarely
    "FP32": pa.float32(),
    "FP64": pa.float64(),
    "BYTES": pa.string(),
}


@dataclass(slots=True)
class TensorSeen:
    """What the first pass saw of one tensor across every record."""

    datatypes: set[str] = field(default_factory=set)
    widths: set[int] = field(default_factory=set)  # values per row
    scalar: bool = True  # every record was [rows] or [rows, 1]

    def add(self, tensor: LoggedTensor) -> None:
        self.datatypes.add(tensor.datatype)
        shape = tensor.shape
        self.widths.add(math.prod(shape[1:]) if shape else 1)
        if len(shape) > 2 or (len(shape) == 2 and shape[1] != 1):
            self.scalar = False


@dataclass(frozen=True, slots=True)
class TensorColumn:
    """One input or output tensor as one column of the export."""

    column: str  # the column's name (the tensor's, unless another column has it)
    tensor: str
    side: Side
    value_type: pa.DataType
    width: int | None  # None: scalar; n: fixed_size_list<n>; -1: list
    index: int | None = None  # a scalar column of one value of each row (a named feature)

    @classmethod
    def of(cls, column: str, tensor: str, side: Side, seen: TensorSeen) -> TensorColumn:
        width: int | None = None
        if not seen.scalar:
            width = next(iter(seen.widths)) if len(seen.widths) == 1 else -1
        return cls(column, tensor, side, _value_type(seen.datatypes), width)

    def split(self, names: Sequence[str]) -> list[TensorColumn]:
        """A ``fixed_size_list<n>`` column as n scalar columns named ``names`` (the
        reference's feature names); as it is when ``names`` are not n."""
        if self.width is None or self.width != len(names):
            return [self]
        return [
            TensorColumn(name, self.tensor, self.side, self.value_type, None, index)
            for index, name in enumerate(names)
        ]

    @property
    def arrow_type(self) -> pa.DataType:
        if self.width is None:
            return self.value_type
        if self.width == -1:
            return pa.list_(self.value_type)
        return pa.list_(self.value_type, self.width)

    def cells(self, tensor: LoggedTensor | None, rows: int) -> list[Any]:
        """One cell per row of a record of ``rows`` rows: None where the record lacks the
        tensor or the tensor does not have one entry per row."""
        if tensor is None:
            return [None] * rows
        data = tensor.data
        if data.ndim == 0:
            data = data.reshape(1)
        if data.shape[0] != rows:
            return [None] * rows
        text = pa.types.is_string(self.value_type)
        if self.index is not None:
            flat = data.reshape(rows, -1)
            if flat.shape[1] <= self.index:
                return [None] * rows
            return [_value(value, text) for value in flat[:, self.index].tolist()]
        if self.width is None:
            if data.ndim > 1 and math.prod(data.shape[1:]) != 1:
                return [None] * rows
            return [_value(value, text) for value in data.reshape(rows).tolist()]
        flat = data.reshape(rows, -1)
        if self.width != -1 and flat.shape[1] != self.width:
            return [None] * rows
        return [[_value(value, text) for value in row] for row in flat.tolist()]


@dataclass(slots=True)
class GroundTruthSeen:
    """The kinds of ground truth value the first pass saw: "bool", "int", "float", "str",
    "json" (a list, an object or null)."""

    kinds: set[str] = field(default_factory=set)

    def add(self, values: Iterable[object]) -> None:
        self.kinds.update(_kind(value) for value in values)

    @property
    def arrow_type(self) -> pa.DataType:
        if self.kinds == {"bool"}:
            return pa.bool_()
        if self.kinds == {"int"}:
            return pa.int64()
        if self.kinds and self.kinds <= {"int", "float"}:
            return pa.float64()
        return pa.string()

    @property
    def as_json(self) -> bool:
        """Whether the values are written as JSON text (mixed kinds, lists, objects)."""
        return self.arrow_type == pa.string() and not self.kinds <= {"str"}


def row_labels(labels: Iterable[Label], rows: int) -> tuple[list[object], list[float | None]]:
    """Per row of a request of ``rows`` rows: its ground truth (the latest label that gives it
    one; None if none) and when that label arrived. Labels that do not fit the request are
    left out (the feedback API checked them when they came)."""
    values: list[object] = [None] * rows
    received: list[float | None] = [None] * rows
    for label in labels:  # oldest first: a later label replaces an earlier one
        try:
            pairs = label_values(label, rows)
        except (ValueError, orjson.JSONDecodeError):
            continue
        for row, value in pairs:
            values[row] = value
            received[row] = label.received
    return values, received


def ground_truth_cell(value: object, seen: GroundTruthSeen) -> object:
    if value is None:
        return None
    if seen.as_json:
        return orjson.dumps(value).decode()
    if seen.arrow_type == pa.float64():
        return float(value)  # type: ignore[arg-type]  # int or float: GroundTruthSeen says so
    return value


def _kind(value: object) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "str"
    return "json"


def _value_type(datatypes: set[str]) -> pa.DataType:
    types = {_ARROW_TYPES.get(datatype, pa.string()) for datatype in datatypes}
    if len(types) == 1:
        return next(iter(types))
    if pa.string() in types:
        return pa.string()
    return pa.float64()


def _value(value: Any, text: bool) -> Any:
    """A cell value; a string column (BYTES beside other datatypes) holds every value as text."""
    if text and value is not None and not isinstance(value, str):
        return str(value)
    return value
