from __future__ import annotations

import pytest

from serval.core.errors import ModelConfigError
from serval.core.lifecycle.version_policy import VersionPolicy
from serval.core.model_spec import ModelSpec


def test_empty_file_gives_defaults() -> None:
    spec = ModelSpec.parse(None, source="m/model.yaml")
    assert spec.policy == VersionPolicy("latest", 1)
    assert spec.max_batch_size == 0
    assert spec.warmup.enabled


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("latest", VersionPolicy("latest", 1)),
        ({"latest": 3}, VersionPolicy("latest", 3)),
        ({"latest": {"num_versions": 2}}, VersionPolicy("latest", 2)),
        ("all", VersionPolicy("all")),
        ({"all": {}}, VersionPolicy("all")),
        ({"specific": [1, 3]}, VersionPolicy("specific", 1, (1, 3))),
        ({"specific": {"versions": [2]}}, VersionPolicy("specific", 1, (2,))),
    ],
)
def test_version_policy_forms(value: object, expected: VersionPolicy) -> None:
    assert ModelSpec.parse({"version_policy": value}, source="x").policy == expected


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"unknown_key": 1}, "unknown_key: unknown key"),
        ({"max_batch_size": -1}, "max_batch_size: Input should be greater than or equal to 0"),
        ({"version_policy": {"specific": []}}, "specific needs at least one version"),
        ({"version_policy": {"latest": 0}}, "num_versions"),
        ({"labels": {"bad-label": 1}}, "must match"),
        ({"labels": {"stable": 0}}, "positive version"),
        ({"inputs": [{"name": "x", "datatype": "FP99"}]}, "inputs.0.datatype"),
        ({"inputs": [{"name": "x", "shape": [0, 3]}]}, "inputs.0.shape"),
        ({"warmup": {"batch_size": 0}}, "warmup.batch_size"),
        ([1, 2], "expected a mapping"),
    ],
)
def test_errors_name_file_key_and_reason(doc: object, message: str) -> None:
    with pytest.raises(ModelConfigError) as caught:
        ModelSpec.parse(doc, source="models/m/model.yaml")
    assert caught.value.message.startswith("models/m/model.yaml: ")
    assert message in caught.value.message


def test_version_policy_select() -> None:
    assert VersionPolicy("latest", 2).select([1, 5, 3]) == {5, 3}
    assert VersionPolicy("all").select([1, 2]) == {1, 2}
    assert VersionPolicy("specific", versions=(2, 9)).select([1, 2, 3]) == {2}
    assert VersionPolicy().select([]) == set()
