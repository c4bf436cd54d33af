"""``precomputed`` in ``model.yaml``: answers a batch job wrote by key (``serval batch --to``),
served for the rows whose key has one; the other rows go to the model or are refused
(docs/caching.md).

``precomputed: {store: redis, key_input: user_id, fallback: model, max_age_s: 86400}``
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from serval.core.specs.keys import MAX_KEYS, KeySpec
from serval.core.specs.strict import StrictSection


class PrecomputedSpec(StrictSection):
    """Where the precomputed answers are and what happens to a row without one."""

    store: str = Field(
        min_length=1,
        max_length=4096,
        description="redis (the server's --redis-url), a redis://HOST:PORT/DB URL, or "
        "sqlite:///relative.db / sqlite:////absolute.db: what `serval batch --to` wrote to.",
    )
    key_input: tuple[KeySpec, ...] = Field(
        min_length=1,
        max_length=MAX_KEYS,
        description="The request input(s) holding each row's key, as the batch job's --key "
        "column(s): `user_id`, `[region, user_id]` or `[{name: user_id, datatype: INT64}]`.",
    )
    fallback: Literal["model", "error"] = Field(
        default="model",
        description="A row without a (fresh) precomputed answer: model (run the model on "
        "it) or error (404 naming the key).",
    )
    max_age_s: float | None = Field(
        default=None,
        gt=0,
        description="Answers written longer ago than this count as missing.",
    )
    model: str | None = Field(
        default=None,
        min_length=1,
        max_length=256,
        description="The model name the batch job wrote under (default: this model's name).",
    )

    @field_validator("key_input", mode="before")
    @classmethod
    def _one_or_several(cls, value: Any) -> Any:
        return [value] if isinstance(value, str | dict) else value

    @field_validator("store")
    @classmethod
    def _store_known(cls, store: str) -> str:
        if store != "redis" and not store.startswith(
            ("redis://", "rediss://", "unix://", "sqlite:///")
        ):
            raise ValueError(
                "expected redis (the server's --redis-url), redis://HOST:PORT/DB or sqlite:///PATH"
            )
        return store

    @model_validator(mode="after")
    def _keys_unique(self) -> PrecomputedSpec:
        names = [key.name for key in self.key_input]
        if len(set(names)) != len(names):
            raise ValueError("key_input: each input is named once")
        if any(key.shape != (-1,) for key in self.key_input):
            raise ValueError("key_input: a key is one value per row (shape [-1])")
        return self
