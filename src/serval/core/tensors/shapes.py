"""The shapes a request's tensor may have, checked by the codecs as they decode (before any
buffer is sized from a shape)."""

from __future__ import annotations

from collections.abc import Sequence

from serval.core.errors import InvalidInputError

# What a request's shape may say: numpy handles at most 64 dimensions, and no request can
# carry a dimension past 2**31 - 1 elements (only an empty tensor could name one).
MAX_DIMENSIONS = 32
MAX_DIMENSION = 2**31 - 1


def check_shape(shape: Sequence[int], what: str) -> None:
    """Raise ``InvalidInputError`` for a shape no tensor of a request can have (each
    dimension already a non-negative int)."""
    if len(shape) > MAX_DIMENSIONS:
        raise InvalidInputError(
            f"{what}: shape has {len(shape)} dimensions; at most {MAX_DIMENSIONS} are supported"
        )
    for dim in shape:
        if dim > MAX_DIMENSION:
            raise InvalidInputError(f"{what}: shape dimension {dim} is larger than {MAX_DIMENSION}")
