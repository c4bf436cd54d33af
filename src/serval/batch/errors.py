"""The errors a batch job reports: each names the file, the column or the part and the reason."""

from __future__ import annotations

from serval.core.errors import InvalidInputError, ModelExecutionError


class BatchInputError(InvalidInputError):
    """Input files, columns or options that cannot be scored (a user's mistake): raised before
    any output is touched where it can be."""


class BatchOutputError(InvalidInputError):
    """An output folder that cannot be written as asked (exists without --resume or
    --overwrite, or holds another job's parts)."""


class PartFailedError(ModelExecutionError):
    """The model failed on rows of a part (``--on-error stop``): the parts written before it
    are kept and recorded, so ``--resume`` continues from this part."""
