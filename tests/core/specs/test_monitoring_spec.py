"""model.yaml's monitoring section: defaults, and each mistake an error naming the field."""

from __future__ import annotations

import pytest

from serval.core.errors import ModelConfigError
from serval.core.model_spec import ModelSpec


def parse(monitoring: object) -> ModelSpec:
    return ModelSpec.parse({"monitoring": monitoring}, source="m/model.yaml")


def test_a_log_alone_is_enough_and_defaults_are_documented_ones() -> None:
    spec = parse({"log": {"sample_rate": 0.1}}).monitoring
    assert spec is not None and spec.log.sample_rate == 0.1
    assert spec.task_kind == "classification" and spec.drift is None and spec.quality is None
    drift = parse({"reference": "r.parquet", "drift": {"method": "ks"}}).monitoring
    assert drift is not None and drift.drift is not None and drift.drift.limit == 0.1
    regression = parse({"quality": {"metric": "rmse", "max": 2.0}}).monitoring
    assert regression is not None and regression.task_kind == "regression"


@pytest.mark.parametrize(
    ("monitoring", "message"),
    [
        ({"log": {"sample_rate": 1.5}}, r"monitoring.log.sample_rate: .*less than or equal to 1"),
        ({"drift": {"method": "psi"}}, r"monitoring: .*drift: needs reference"),
        ({"reference": "../x.parquet"}, r"monitoring.reference: must be a path inside"),
        ({"reference": "r.parquet", "drift": {"method": "chi2"}}, r"monitoring.drift.method"),
        ({"quality": {"metric": "rmse", "min": 1}}, r"min: rmse is an error metric"),
        ({"quality": {"metric": "accuracy", "max": 1}}, r"max: accuracy is better when higher"),
        ({"quality": {"metric": "auc"}}, r"auc needs score"),
        ({"task": "regression", "quality": {"metric": "f1"}}, r"f1 is not a regression metric"),
        ({"alerts": {"webhook": "ftp://x"}}, r"monitoring.alerts.webhook: .*http"),
        ({"retrain": {"cooldown_s": 5}}, r"retrain needs a webhook, a command or both"),
        ({"sample_rate": 0.1}, r"monitoring.sample_rate: unknown key"),
    ],
)
def test_mistakes_name_the_field(monitoring: object, message: str) -> None:
    with pytest.raises(ModelConfigError, match=message):
        parse(monitoring)
