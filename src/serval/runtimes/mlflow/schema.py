"""An MLflow signature as serval tensors.

A column-based schema gives one input (or output) per column, of shape ``[-1]``: a client
sends each column as a tensor named after it, as MLServer's pandas convention (``content_type:
"pd"``) does. A tensor-based schema gives its tensors as they are, ``-1`` for a variable
dimension. Unnamed specs are named ``input`` / ``predict`` (``input_<i>`` / ``predict_<i>``
when there are several), the names serval's tabular runtimes use.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np

from serval.core.errors import InvalidInputError, ModelLoadError
from serval.core.tensors.datatypes import DataType
from serval.core.types import TensorSpec

INPUT = "input"
PREDICT = "predict"

# MLflow's column types (mlflow.types.DataType) that have a tensor datatype.
_COLUMN_TYPES: dict[str, DataType] = {
    "boolean": DataType.BOOL,
    "integer": DataType.INT32,
    "long": DataType.INT64,
    "float": DataType.FP32,
    "double": DataType.FP64,
    "string": DataType.BYTES,
    "binary": DataType.BYTES,
}


class Kind(StrEnum):
    COLUMNS = "columns"  # the model takes (gives) a pandas DataFrame
    TENSORS = "tensors"  # the model takes (gives) a numpy array, or a dict of them


@dataclass(frozen=True, slots=True)
class Field:
    """One spec of the schema as a tensor, with what the model needs to rebuild its value."""

    spec: TensorSpec
    mlflow_type: str  # the column type, or the tensor's numpy dtype
    named: bool  # whether the signature names it (else serval does)


@dataclass(frozen=True, slots=True)
class Schema:
    kind: Kind
    fields: tuple[Field, ...]

    @property
    def specs(self) -> tuple[TensorSpec, ...]:
        return tuple(f.spec for f in self.fields)

    @property
    def named(self) -> bool:
        return all(f.named for f in self.fields)


def parse_schema(items: Sequence[dict[str, Any]], default_name: str, where: str) -> Schema:
    """``items`` (the decoded JSON of a signature's inputs or outputs) as tensors."""
    if not items:
        raise ModelLoadError(f"{where} is empty")
    tensors = [item.get("type") == "tensor" for item in items]
    if any(tensors) and not all(tensors):
        raise ModelLoadError(f"{where} mixes column and tensor specs")
    kind = Kind.TENSORS if all(tensors) else Kind.COLUMNS
    fields = []
    for index, item in enumerate(items):
        given = item.get("name")
        name = str(given) if given else _default(default_name, index, len(items))
        what = f"{where}: {name!r}"
        if kind is Kind.TENSORS:
            fields.append(_tensor_field(item, name, bool(given), what))
        else:
            fields.append(_column_field(item, name, bool(given), what))
    names = [f.spec.name for f in fields]
    if len(set(names)) != len(names):
        raise ModelLoadError(f"{where} names a spec twice: {', '.join(names)}")
    return Schema(kind, tuple(fields))


def _default(base: str, index: int, count: int) -> str:
    return base if count == 1 else f"{base}_{index}"


def _column_field(item: dict[str, Any], name: str, named: bool, what: str) -> Field:
    column_type = item.get("type")
    datatype = _COLUMN_TYPES.get(column_type) if isinstance(column_type, str) else None
    if datatype is None:
        supported = ", ".join(_COLUMN_TYPES)
        raise ModelLoadError(
            f"{what} has the column type {column_type!r}, which serval cannot send as a tensor "
            f"(supported: {supported})"
        )
    return Field(TensorSpec(name, datatype, (-1,)), str(column_type), named)


def _tensor_field(item: dict[str, Any], name: str, named: bool, what: str) -> Field:
    spec = item.get("tensor-spec")
    if not isinstance(spec, dict):
        raise ModelLoadError(f"{what} has no tensor-spec")
    try:
        dtype = np.dtype(str(spec.get("dtype")))
        datatype = DataType.from_numpy(dtype)
    except (TypeError, ValueError, InvalidInputError) as exc:
        raise ModelLoadError(f"{what}: unsupported dtype {spec.get('dtype')!r}: {exc}") from exc
    raw_shape = spec.get("shape")
    if not isinstance(raw_shape, list) or not all(isinstance(d, int) for d in raw_shape):
        raise ModelLoadError(f"{what}: shape {raw_shape!r} is not a list of integers")
    shape = tuple(d if d >= 0 else -1 for d in raw_shape)
    return Field(TensorSpec(name, datatype, shape), dtype.str, named)
