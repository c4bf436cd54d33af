"""Rows of a request: the first dimension its tensors share.

What keeps row-aligned data row-aligned: keys (``core.composition.keys``) check that each key
has the request's rows; a composite that regroups rows (a cascade sends a subset of them to
the next stage) selects them with ``take_rows`` and answers in request order; batch serving
(``serval batch``) calls a model per record batch and relies on the same alignment.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from serval.core.errors import InvalidInputError
from serval.core.types import Tensor


def row_count(tensor: Tensor) -> int | None:
    """The tensor's rows (its first dimension); None for a scalar, which has no rows."""
    shape = tensor.data.shape
    return int(shape[0]) if shape else None


def check_rows(
    tensors: Sequence[Tensor], reference: Tensor, what: str = "tensor", reference_is: str = "input"
) -> None:
    """Raise ``InvalidInputError`` naming the first of ``tensors`` whose first dimension is not
    that of ``reference`` (which has rows); ``what`` says what the tensors are (``"key"``),
    ``reference_is`` what the reference is. The message is built only on that path."""
    rows = reference.data.shape[0]
    for tensor in tensors:
        shape = tensor.data.shape
        if not shape or shape[0] != rows:
            has = f"{shape[0]} row{_s(shape[0])}" if shape else "no rows (it is a scalar)"
            raise InvalidInputError(
                f"{what} {tensor.name!r} has {has}, but {reference_is} {reference.name!r} has "
                f"{rows}: a {what} has one value per row"
            )


def _s(count: int) -> str:
    return "" if count == 1 else "s"


def take_rows(tensor: Tensor, indices: np.ndarray[Any, Any] | Sequence[int]) -> Tensor:
    """The rows ``indices`` of ``tensor`` (a subset, or a reordering), as a new tensor of the
    same name and datatype; ``tensor`` is left as it is."""
    index = np.asarray(indices, dtype=np.intp)
    return Tensor(tensor.name, tensor.datatype, np.take(tensor.data, index, axis=0))
