"""The base of every model.yaml section: unknown keys are errors (a misspelt key must not be
ignored in silence), and a parsed spec is frozen (it is shared by every request)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StrictSection(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
