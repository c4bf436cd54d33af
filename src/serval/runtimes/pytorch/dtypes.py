"""Open Inference Protocol datatypes and their torch equivalents."""

from __future__ import annotations

import torch

from serval.core.errors import ModelConfigError
from serval.core.tensors.datatypes import DataType

TO_TORCH: dict[DataType, torch.dtype] = {
    DataType.BOOL: torch.bool,
    DataType.UINT8: torch.uint8,
    DataType.UINT16: torch.uint16,
    DataType.UINT32: torch.uint32,
    DataType.UINT64: torch.uint64,
    DataType.INT8: torch.int8,
    DataType.INT16: torch.int16,
    DataType.INT32: torch.int32,
    DataType.INT64: torch.int64,
    DataType.FP16: torch.float16,
    DataType.FP32: torch.float32,
    DataType.FP64: torch.float64,
}
FROM_TORCH: dict[torch.dtype, DataType] = {dtype: datatype for datatype, dtype in TO_TORCH.items()}


def torch_dtype(datatype: DataType, where: str) -> torch.dtype:
    """``datatype``'s torch dtype; torch has no string tensors, so BYTES is a config error."""
    dtype = TO_TORCH.get(datatype)
    if dtype is None:
        raise ModelConfigError(f"{where}: torch has no {datatype} tensors")
    return dtype


def protocol_datatype(dtype: torch.dtype, where: str) -> DataType:
    """``dtype``'s protocol datatype; bfloat16 and complex types have none."""
    datatype = FROM_TORCH.get(dtype)
    if datatype is None:
        raise ModelConfigError(
            f"{where}: torch dtype {dtype} has no Open Inference Protocol datatype; have the "
            f"model convert it (e.g. to float32) before it returns"
        )
    return datatype
