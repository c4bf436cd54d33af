"""What every runtime takes from ``model.yaml``: its ``runtime_options``, parsed into the
runtime's own pydantic model, and the ``inputs``/``outputs`` corrections. Errors name the file,
the key and the reason."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from serval.core.errors import ModelConfigError
from serval.core.lifecycle.layout import SPEC_FILE
from serval.core.lifecycle.loader import LoadRequest
from serval.core.model_spec import describe_validation_error
from serval.core.specs.tensors import TensorOverride
from serval.core.types import TensorSpec

OptionsT = TypeVar("OptionsT", bound=BaseModel)


def spec_file(request: LoadRequest) -> str:
    """The ``model.yaml`` of the model being loaded, for error messages."""
    return str(request.path.parent / SPEC_FILE)


def parse_runtime_options(options_class: type[OptionsT], request: LoadRequest) -> OptionsT:
    """The request's ``runtime_options`` validated by ``options_class``."""
    try:
        return options_class.model_validate(dict(request.spec.runtime_options))
    except ValidationError as exc:
        reason = describe_validation_error(exc, options_class)
        raise ModelConfigError(f"{spec_file(request)}: runtime_options: {reason}") from exc


def apply_overrides(
    specs: Sequence[TensorSpec], overrides: Iterable[TensorOverride], field: str, source: str
) -> tuple[TensorSpec, ...]:
    """``specs`` with ``model.yaml``'s corrections of datatype and shape applied."""
    by_name = {override.name: override for override in overrides}
    names = [spec.name for spec in specs]
    unknown = [name for name in by_name if name not in names]
    if unknown:
        raise ModelConfigError(
            f"{source}: {field}: {', '.join(unknown)} not in the model (it has: {', '.join(names)})"
        )
    result = []
    for spec in specs:
        override = by_name.get(spec.name)
        if override is None:
            result.append(spec)
        else:
            datatype = override.datatype or spec.datatype
            shape = override.shape or spec.shape
            columns = _columns(override, shape, field, f"{source}: {field}: {spec.name}")
            result.append(TensorSpec(spec.name, datatype, shape, columns or spec.columns))
    return tuple(result)


def _columns(
    override: TensorOverride, shape: tuple[int, ...], field: str, where: str
) -> tuple[str, ...]:
    """The override's column names, checked against the tensor's shape: [-1, n] with n of
    them (or n variable)."""
    columns = override.columns
    if columns is None:
        return ()
    if field != "inputs":
        raise ModelConfigError(f"{where}: columns are declared on inputs, not outputs")
    if len(shape) != 2:
        raise ModelConfigError(
            f"{where}: columns name the columns of a [-1, n] input; its shape is {list(shape)}"
        )
    if shape[1] not in (-1, len(columns)):
        raise ModelConfigError(
            f"{where}: {len(columns)} columns for an input of {shape[1]} columns "
            f"(shape {list(shape)})"
        )
    return columns
