"""``keys`` in ``model.yaml``: inputs the model never sees, returned untouched as outputs of the
same name, row-aligned with the answers (the keyed predictions pattern, docs/keys.md).

Short form ``keys: [request_id]``: a BYTES key, one string per row. Long form
``keys: [{name: customer, datatype: INT64}]`` declares another datatype, and ``shape`` a key of
several values per row (``[-1, 2]``). A key's datatype is declared, never "any": the data plane
validates each request against the model's metadata, and metadata (V2, Triton's config, TF
Serving's signature) can only report one datatype per tensor.
"""

from __future__ import annotations

from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    field_validator,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from serval.core.tensors.datatypes import DataType
from serval.core.types import TensorSpec

MAX_KEYS = 64
MAX_KEY_DIMENSIONS = 8
_MAX_DIMENSION = 2**31 - 1


class KeySpec(BaseModel):
    """One key: a request input passed around the model and back as an output."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(
        min_length=1,
        max_length=256,
        description="The key's name: the request input that carries it and the response "
        "output that returns it. Must differ from every input and output of the model.",
    )
    datatype: DataType = Field(
        default=DataType.BYTES,
        description="Open Inference Protocol datatype the requests send (BYTES: strings).",
    )
    shape: tuple[int, ...] = Field(
        default=(-1,),
        min_length=1,
        max_length=MAX_KEY_DIMENSIONS,
        description="Shape with the row dimension first, always -1: [-1] is one value per "
        "row, [-1, 2] two values per row.",
    )

    @model_validator(mode="before")
    @classmethod
    def _accept_a_bare_name(cls, value: Any) -> Any:
        # `keys: [request_id]` is `keys: [{name: request_id}]`.
        return {"name": value} if isinstance(value, str) else value

    @classmethod
    def __get_pydantic_json_schema__(
        cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        # docs/model.schema.json: the short form (a bare name) is valid too.
        long_form = handler(core_schema)
        short_form = {"type": "string", "minLength": 1, "maxLength": 256, "title": "Key name"}
        return {"anyOf": [short_form, long_form]}

    @field_validator("shape")
    @classmethod
    def _one_row_dimension_first(cls, shape: tuple[int, ...]) -> tuple[int, ...]:
        if shape[0] != -1:
            raise ValueError("the first dimension is the request's rows: it must be -1")
        if any(dim < -1 or dim == 0 or dim > _MAX_DIMENSION for dim in shape[1:]):
            raise ValueError("dimensions after the first are positive or -1 (variable)")
        return shape

    @property
    def tensor_spec(self) -> TensorSpec:
        """How metadata declares the key, as an input and as an output."""
        return TensorSpec(self.name, self.datatype, self.shape)


def unique_keys(keys: tuple[KeySpec, ...]) -> tuple[KeySpec, ...]:
    """The validator of ``ModelSpec.keys``: each name once."""
    seen: set[str] = set()
    for key in keys:
        if key.name in seen:
            raise ValueError(f"key {key.name!r} is named more than once")
        seen.add(key.name)
    return keys
