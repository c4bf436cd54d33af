"""``runtime_options`` of an MLflow model in ``model.yaml``."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class MlflowOptions(BaseModel):
    """``runtime_options`` of a model served through its ``python_function`` flavor."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    trust_pickle: bool = Field(
        default=False,
        description="Load an MLflow model that holds pickles (python_model.pkl, model.pkl...). "
        "A pickle runs arbitrary code when loaded: set this only for models you trust.",
    )
    trusted_types: tuple[str, ...] = Field(
        default=(),
        description="Types a skops file of the model may hold beyond those skops trusts by "
        "default (the MLmodel's skops_trusted_types must all be listed here).",
    )
