"""Converting a tensor's values to another datatype when no value changes its meaning: what
lets a client whose library picks its own datatypes (MLServer's codecs send Python floats as
FP64 and ints as INT64) call a model declared FP32 or INT32."""

from __future__ import annotations

from typing import Any

import numpy as np

from serval.core.errors import InvalidInputError
from serval.core.tensors.datatypes import DataType

_FLOATS = frozenset({DataType.FP16, DataType.FP32, DataType.FP64})
_NUMBERS = frozenset(DataType) - {DataType.BYTES}


def cast_values(
    data: np.ndarray[Any, Any], given: DataType, wanted: DataType, what: str
) -> np.ndarray[Any, Any]:
    """``data`` (of datatype ``given``) as ``wanted``; ``InvalidInputError`` naming ``what``
    when a value would not survive: numbers and BYTES never convert into each other, a float
    becomes an integer only when it is integral and in range, an integer only within its new
    range, and BOOL takes only 0 and 1. Any number converts to a float (FP64 to FP32 rounds,
    as every client library that sends FP64 by default expects)."""
    if given is wanted:
        return data
    if given not in _NUMBERS or wanted not in _NUMBERS:
        raise InvalidInputError(
            f"{what}: expected datatype {wanted}, received {given}, which does not convert"
        )
    target = wanted.numpy_dtype
    if wanted in _FLOATS or data.size == 0:
        return data.astype(target)
    if given in _FLOATS and not (
        np.all(np.isfinite(data)) and np.array_equal(data, np.trunc(data))
    ):
        raise _lossy(what, given, wanted, "non-integral values")
    if wanted is DataType.BOOL:
        if not np.all((data == 0) | (data == 1)):
            raise _lossy(what, given, wanted, "values other than 0 and 1")
        return data.astype(target)
    limits = np.iinfo(target.name)
    if data.min() < limits.min or data.max() > limits.max:
        raise _lossy(what, given, wanted, f"values outside [{limits.min}, {limits.max}]")
    return data.astype(target)


def _lossy(what: str, given: DataType, wanted: DataType, why: str) -> InvalidInputError:
    return InvalidInputError(
        f"{what}: expected datatype {wanted}, received {given} with {why}, which {wanted} "
        f"cannot hold"
    )
