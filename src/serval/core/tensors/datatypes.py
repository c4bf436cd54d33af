"""Open Inference Protocol datatypes and their numpy equivalents."""

from __future__ import annotations

from enum import StrEnum

import numpy as np

from serval.core.errors import InvalidInputError


class DataType(StrEnum):
    """A tensor element type as the Open Inference Protocol names it."""

    BOOL = "BOOL"
    UINT8 = "UINT8"
    UINT16 = "UINT16"
    UINT32 = "UINT32"
    UINT64 = "UINT64"
    INT8 = "INT8"
    INT16 = "INT16"
    INT32 = "INT32"
    INT64 = "INT64"
    FP16 = "FP16"
    FP32 = "FP32"
    FP64 = "FP64"
    BYTES = "BYTES"

    @classmethod
    def parse(cls, value: object, *, field: str) -> DataType:
        """Parse a client-supplied datatype name, naming the field when it is wrong."""
        if isinstance(value, str) and value in cls.__members__:
            return cls[value]
        known = ", ".join(member.value for member in cls)
        raise InvalidInputError(f"{field}: unknown datatype {value!r}; expected one of {known}")

    @property
    def numpy_dtype(self) -> np.dtype[np.generic]:
        return _TO_NUMPY[self]

    @property
    def itemsize(self) -> int:
        """Bytes per element on the wire; 0 for the variable-length BYTES."""
        return 0 if self is DataType.BYTES else _TO_NUMPY[self].itemsize

    @classmethod
    def from_numpy(cls, dtype: np.dtype[np.generic]) -> DataType:
        if dtype.kind in ("O", "S", "U"):
            return cls.BYTES
        try:
            return _FROM_NUMPY[dtype.newbyteorder("=")]
        except KeyError:
            raise InvalidInputError(f"numpy dtype {dtype} has no protocol datatype") from None


_TO_NUMPY: dict[DataType, np.dtype[np.generic]] = {
    DataType.BOOL: np.dtype(np.bool_),
    DataType.UINT8: np.dtype(np.uint8),
    DataType.UINT16: np.dtype(np.uint16),
    DataType.UINT32: np.dtype(np.uint32),
    DataType.UINT64: np.dtype(np.uint64),
    DataType.INT8: np.dtype(np.int8),
    DataType.INT16: np.dtype(np.int16),
    DataType.INT32: np.dtype(np.int32),
    DataType.INT64: np.dtype(np.int64),
    DataType.FP16: np.dtype(np.float16),
    DataType.FP32: np.dtype(np.float32),
    DataType.FP64: np.dtype(np.float64),
    DataType.BYTES: np.dtype(np.object_),
}
_FROM_NUMPY: dict[np.dtype[np.generic], DataType] = {
    dtype: datatype for datatype, dtype in _TO_NUMPY.items() if datatype is not DataType.BYTES
}
