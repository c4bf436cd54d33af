"""``keys`` in model.yaml: the short and long forms, and errors that name the key."""

from __future__ import annotations

import pytest

from serval.core.errors import ModelConfigError
from serval.core.model_spec import ModelSpec
from serval.core.specs.keys import KeySpec
from serval.core.tensors.datatypes import DataType
from serval.core.types import TensorSpec


def test_short_and_long_forms() -> None:
    spec = ModelSpec.parse(
        {"keys": ["request_id", {"name": "pair", "datatype": "INT64", "shape": [-1, 2]}]},
        source="m/model.yaml",
    )
    assert spec.keys == (
        KeySpec(name="request_id", datatype=DataType.BYTES, shape=(-1,)),
        KeySpec(name="pair", datatype=DataType.INT64, shape=(-1, 2)),
    )
    assert spec.keys[1].tensor_spec == TensorSpec("pair", DataType.INT64, (-1, 2))
    assert ModelSpec().keys == ()


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        (["id", "id"], "keys: key 'id' is named more than once"),
        ([{"name": "id", "shape": [3]}], "keys.0.shape: the first dimension"),
        ([{"name": "id", "shape": [-1, 0]}], "keys.0.shape: dimensions after"),
        ([{"name": "id", "shape": []}], "keys.0.shape"),
        ([{"name": "id", "datatype": "TEXT"}], "keys.0.datatype"),
        ([{"name": "id", "type": "BYTES"}], "keys.0.type: unknown key"),
        ([""], "keys.0.name"),
        ("id", "keys: Input should be a valid"),
    ],
)
def test_errors_name_the_key_and_the_reason(keys: object, message: str) -> None:
    with pytest.raises(ModelConfigError) as caught:
        ModelSpec.parse({"keys": keys}, source="m/model.yaml")
    assert caught.value.message.startswith("m/model.yaml: ")
    assert message in caught.value.message
