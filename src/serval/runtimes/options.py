"""Parsing a runtime's ``runtime_options`` from ``model.yaml`` into its own pydantic model."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from serval.core.errors import ModelConfigError
from serval.core.model_spec import describe_validation_error

OptionsT = TypeVar("OptionsT", bound=BaseModel)


def parse_runtime_options(options_class: type[OptionsT], values: Mapping[str, Any]) -> OptionsT:
    """Validate ``values``; errors name ``model.yaml``, the key and the reason."""
    try:
        return options_class.model_validate(dict(values))
    except ValidationError as exc:
        raise ModelConfigError(
            f"model.yaml: runtime_options: {describe_validation_error(exc)}"
        ) from exc
