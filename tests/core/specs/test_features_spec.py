"""``features`` in model.yaml: the key template (``key_of``) and what the section refuses."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from serval.core.specs.features import FeaturesSpec


def section(**changes: Any) -> FeaturesSpec:
    value: dict[str, Any] = {
        "entity": "user_id",
        "key": "user:{user_id}",
        "fields": ["age"],
        "into": "features",
    }
    value.update(changes)
    return FeaturesSpec.model_validate(value)


def test_the_key_of_an_entity_is_the_template_as_str_format_writes_it() -> None:
    assert section().key_of("ann") == "user:ann"
    template = "fs{{v2}}:{user_id}:{{h}}"
    assert section(key=template).key_of("7") == template.format(user_id="7") == "fs{v2}:7:{h}"


@pytest.mark.parametrize(
    ("key", "says"),
    [
        ("user:{user_id:05d}", "without a format spec"),
        ("user:{user_id!r}", "without a format spec"),
        ("user:{user_id}:{user_id}", "braces once"),
        ("user:{uid}", "braces once"),
        ("user", "braces once"),
    ],
)
def test_a_key_that_does_not_name_the_entity_once_and_plainly_is_refused(
    key: str, says: str
) -> None:
    with pytest.raises(ValidationError, match=says):
        section(key=key)
