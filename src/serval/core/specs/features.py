"""``features`` in ``model.yaml``: one model input filled from an online feature store (Redis
hashes) by each row's entity, before the model runs (docs/caching.md).

::

    features:
      store: redis                    # the server's --redis-url
      entity: user_id                 # a request input, one entity per row ([-1], BYTES or INT64)
      key: "user:{user_id}"           # the Redis hash of an entity
      fields: [age, income, clicks]   # hash fields, in this order
      into: features                  # the model input they fill ([-1, 3])
      missing: error                  # or default, with defaults: {age: 0, ...}
"""

from __future__ import annotations

import math
import re
import string
from typing import Literal

from pydantic import Field, PrivateAttr, field_validator, model_validator

from serval.core.specs.keys import KeySpec
from serval.core.specs.strict import StrictSection
from serval.core.tensors.datatypes import DataType

MAX_FEATURE_FIELDS = 4096
_FIELD = re.compile(r"^[^\x00-\x1f]{1,256}$")


class FeaturesSpec(StrictSection):
    """Where the features of each row come from and which input they fill."""

    store: Literal["redis"] = Field(
        default="redis", description="The feature store: redis (the server's --redis-url)."
    )
    entity: KeySpec = Field(
        description="The request input naming each row's entity: `user_id` (BYTES) or "
        "`{name: user_id, datatype: INT64}`. The model never sees it.",
    )
    key: str = Field(
        min_length=1,
        max_length=1024,
        description="The Redis key of an entity's hash, with the entity input's name in "
        "braces where its value goes: 'user:{user_id}'.",
    )
    fields: tuple[str, ...] = Field(
        min_length=1,
        max_length=MAX_FEATURE_FIELDS,
        description="Hash fields read for each entity, in the order of the input's columns.",
    )
    into: str = Field(
        min_length=1,
        max_length=256,
        description="The model input the fields fill: shape [-1, len(fields)] (numbers of the "
        "input's datatype).",
    )
    append: bool = Field(
        default=False,
        description="The request sends the first columns of `into` itself; the looked-up "
        "fields are placed after them.",
    )
    missing: Literal["error", "default"] = Field(
        default="error",
        description="An entity without a hash, or a hash without a field: error (400 naming "
        "the entity and field) or default (the value in `defaults`).",
    )
    defaults: dict[str, float] = Field(
        default_factory=dict,
        description="With missing: default, the value of each field an entity lacks (fields "
        "not listed here: 0).",
    )

    # The key's text before and after the entity (doubled braces are literal ones, as in
    # Python's str.format): set by the validator, so that key_of is one concatenation.
    _key_prefix: str = PrivateAttr(default="")
    _key_suffix: str = PrivateAttr(default="")

    @field_validator("fields")
    @classmethod
    def _fields_valid(cls, fields: tuple[str, ...]) -> tuple[str, ...]:
        seen: set[str] = set()
        for name in fields:
            if not _FIELD.match(name):
                raise ValueError(f"field {name!r}: 1 to 256 characters, no control characters")
            if name in seen:
                raise ValueError(f"field {name!r} is named more than once")
            seen.add(name)
        return fields

    @field_validator("entity")
    @classmethod
    def _entity_one_value_per_row(cls, entity: KeySpec) -> KeySpec:
        if entity.shape != (-1,):
            raise ValueError("the entity is one value per row: shape [-1]")
        if entity.datatype not in (DataType.BYTES, DataType.INT64):
            raise ValueError("the entity's datatype is BYTES or INT64")
        return entity

    @model_validator(mode="after")
    def _key_and_defaults_fit(self) -> FeaturesSpec:
        parts = list(string.Formatter().parse(self.key))
        placeholders = [name for _, name, _, _ in parts if name is not None]
        if placeholders != [self.entity.name]:
            raise ValueError(
                f"key: put the entity's name in braces once, e.g. 'user:{{{self.entity.name}}}' "
                f"(found {placeholders or 'none'})"
            )
        if any(spec or conversion for _, name, spec, conversion in parts if name is not None):
            # key_of inserts the entity's text as it is; a format spec would be ignored.
            raise ValueError(
                f"key: the entity is inserted as it is: write {{{self.entity.name}}} without a "
                f"format spec or conversion"
            )
        at = next(i for i, (_, name, _, _) in enumerate(parts) if name is not None)
        self._key_prefix = "".join(literal for literal, _, _, _ in parts[: at + 1])
        self._key_suffix = "".join(literal for literal, _, _, _ in parts[at + 1 :])
        if self.into == self.entity.name:
            raise ValueError("into: the entity input cannot be the input the features fill")
        unknown = sorted(set(self.defaults) - set(self.fields))
        if unknown:
            raise ValueError(f"defaults: {', '.join(unknown)} not among fields")
        if self.defaults and self.missing != "default":
            raise ValueError("defaults: only used with missing: default")
        for name, value in self.defaults.items():
            if not math.isfinite(value):
                raise ValueError(f"defaults: {name} must be a finite number")
        return self

    def key_of(self, entity: str) -> str:
        """The Redis key of one entity (its value as text): ``key`` with the entity in place of
        its name in braces (and ``{{``, ``}}`` as single braces, as ``str.format`` writes)."""
        return self._key_prefix + entity + self._key_suffix
