"""Converting between a runtime's Python values and tensors of a declared datatype."""

from __future__ import annotations

from typing import Any

import numpy as np

from serval.core.errors import InvalidInputError
from serval.core.tensors.datatypes import DataType
from serval.core.types import Tensor, TensorSpec


def to_tensor(spec: TensorSpec, result: Any) -> Tensor:
    """``result`` as ``spec``'s datatype: text as UTF-8 BYTES, numbers cast when needed.

    Raises ``ValueError`` or ``TypeError`` when the values do not fit the datatype.
    """
    array = np.asarray(result)
    if spec.datatype is DataType.BYTES:
        encoded = np.empty(array.shape, dtype=np.object_)
        flat = encoded.reshape(-1)
        for index, item in enumerate(array.reshape(-1)):
            flat[index] = item if isinstance(item, bytes) else str(item).encode("utf-8")
        return Tensor(spec.name, spec.datatype, encoded)
    return Tensor(spec.name, spec.datatype, array.astype(spec.datatype.numpy_dtype, copy=False))


def decode_strings(tensor: Tensor) -> np.ndarray[Any, Any]:
    """A BYTES tensor's elements decoded from UTF-8: an object array of ``str``."""
    decoded = np.empty(tensor.data.shape, dtype=np.object_)
    flat = decoded.reshape(-1)
    try:
        for index, item in enumerate(tensor.data.reshape(-1)):
            flat[index] = item.decode("utf-8") if isinstance(item, bytes) else str(item)
    except UnicodeDecodeError as exc:
        raise InvalidInputError(
            f"input {tensor.name!r}: an element is not valid UTF-8 ({exc.reason})"
        ) from exc
    return decoded
