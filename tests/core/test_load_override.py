"""A load request's config override never sets what the operator decides."""

from __future__ import annotations

import pytest

from serval.core.errors import InvalidInputError, ModelConfigError
from serval.core.load_override import OPERATOR_ONLY_FIELDS, LoadOverride
from serval.core.model_spec import ModelSpec


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"runtime_options": {"trust_pickle": True}}, "runtime_options.trust_pickle"),
        ({"runtime_options": {"trusted_types": ["x.Y"]}}, "runtime_options.trusted_types"),
        ({"runtime_options": {"isolation": "thread"}}, "runtime_options.isolation"),
        ({"runtime": "python"}, "runtime"),
        ({"runtime_options": {}}, "runtime_options"),
    ],
)
def test_operator_fields_are_refused(config: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidInputError, match=f"{field} cannot be set by a load request"):
        LoadOverride.parse(config, "pk")


def test_operator_fields_come_from_model_yaml() -> None:
    override = LoadOverride.parse({"max_batch_size": 4}, "pk")
    file_spec = ModelSpec.parse(
        {"runtime": "sklearn", "runtime_options": {"trust_pickle": True}, "max_batch_size": 8},
        source="model.yaml",
    )
    merged = override.applied_to(file_spec)
    assert merged.max_batch_size == 4
    assert merged.runtime == "sklearn"
    assert merged.runtime_options == {"trust_pickle": True}
    # Without a model.yaml, the safe defaults.
    assert override.applied_to(None).runtime_options == {}
    assert set(OPERATOR_ONLY_FIELDS) == {"runtime", "runtime_options"}


def test_origins_are_described() -> None:
    override = LoadOverride.parse({"warmup": {"batch_size": 2}}, "pk")
    assert override.describe_origins("/repo/pk/model.yaml") == (
        "warmup from the load request; runtime, runtime_options from /repo/pk/model.yaml; "
        "the rest defaults"
    )
    assert "their defaults (no model.yaml)" in override.describe_origins(None)


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"warmup": {"batch_size": 10_000_000}}, "warmup.batch_size"),
        ({"inputs": [{"name": "x", "shape": [-1, 2**40]}]}, "inputs.0.shape"),
        ({"inputs": [{"name": "x", "shape": [1] * 70}]}, "inputs.0.shape"),
        ({"dynamic_batching": {"preferred_batch_sizes": list(range(1, 100))}}, "preferred"),
    ],
)
def test_sizes_are_bounded(config: dict[str, object], field: str) -> None:
    with pytest.raises(ModelConfigError, match=field):
        LoadOverride.parse(config, "pk")
    with pytest.raises(ModelConfigError, match=field):  # in model.yaml too
        ModelSpec.parse(config, source="model.yaml")


def test_config_must_be_an_object() -> None:
    with pytest.raises(InvalidInputError, match="JSON object"):
        LoadOverride.parse([1], "pk")
