"""A load request's Triton model configuration becomes model.yaml's fields; what serval does
not have is refused by name."""

from __future__ import annotations

import json
from typing import Any

import pytest

from serval.core.errors import InvalidInputError
from serval.core.model_spec import ModelSpec
from serval.protocols.oip.triton_load import (
    from_triton_config,
    is_triton_config,
    translate_load_parameters,
)

# What serval's GET /v2/models/{m}/config answers (and tritonclient sends back).
TRITON = {
    "name": "m",
    "platform": "onnxruntime_onnx",
    "backend": "onnxruntime",
    "version_policy": {"specific": {"versions": ["1", "3"]}},
    "max_batch_size": 8,
    "input": [{"name": "x", "data_type": "TYPE_FP32", "dims": [4]}],
    "output": [{"name": "y", "data_type": "TYPE_STRING", "dims": []}],
    "instance_group": [{"name": "m_0", "kind": "KIND_CPU", "count": 2}],
    "dynamic_batching": {
        "preferred_batch_size": [4],
        "max_queue_delay_microseconds": "100",
        "priority_levels": 2,
        "default_priority_level": 2,
        "default_queue_policy": {"max_queue_size": 16},
    },
    "parameters": {
        "flavour": {"string_value": "mild"},
        "serval.dynamic_batching.mode": {"string_value": "fixed"},
    },
}


def test_tritons_fields_become_model_yaml() -> None:
    spec = from_triton_config("m", TRITON)
    assert spec == {
        "max_batch_size": 8,
        "version_policy": {"specific": [1, 3]},
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}],
        "outputs": [{"name": "y", "datatype": "BYTES", "shape": [-1]}],
        "instances": 2,
        "dynamic_batching": {
            "preferred_batch_sizes": [4],
            "max_queue_delay_us": 100,
            "priority_levels": 2,
            "default_priority_level": 2,
            "max_queue_size": 16,
            "mode": "fixed",
        },
        "parameters": {"flavour": "mild"},
    }
    ModelSpec.parse(spec, source="test")  # and model.yaml takes it


def test_unbatched_dims_are_the_full_shape() -> None:
    spec = from_triton_config(
        "m", {"input": [{"name": "x", "data_type": "TYPE_INT64", "dims": ["-1", "3"]}]}
    )
    assert spec == {"inputs": [{"name": "x", "datatype": "INT64", "shape": [-1, 3]}]}


def test_fields_at_their_defaults_are_accepted() -> None:
    config = {
        "input": [{"name": "x", "dims": [2], "format": "FORMAT_NONE", "optional": False}],
        "sequence_batching": {},
        "model_warmup": [],
        "default_model_filename": "",
        "instance_group": [{"count": 0, "gpus": [], "kind": "KIND_AUTO"}],
    }
    assert from_triton_config("m", config) == {
        "inputs": [{"name": "x", "shape": [2]}],
        "instances": 1,
    }


@pytest.mark.parametrize(
    ("config", "named"),
    [
        ({"sequence_batching": {"max_sequence_idle_microseconds": 5}}, "sequence_batching"),
        ({"ensemble_scheduling": {"step": [{"model_name": "a"}]}}, "ensemble_scheduling"),
        ({"instance_group": [{"kind": "KIND_GPU"}]}, "KIND_GPU"),
        ({"instance_group": [{"count": 1, "gpus": [0]}]}, "instance_group[0].gpus"),
        ({"output": [{"name": "y", "label_filename": "l.txt"}]}, "output[0].label_filename"),
        ({"input": [{"name": "x", "reshape": {"shape": [2]}}]}, "input[0].reshape"),
        ({"dynamic_batching": {"preserve_ordering": True}}, "dynamic_batching.preserve_ordering"),
        ({"name": "other"}, "'other' is not the model 'm'"),
        ({"max_batch_size": "many"}, "max_batch_size must be an integer"),
        ({"input": [{"dims": [1]}]}, "input[0].name"),
    ],
)
def test_what_serval_does_not_have_is_refused_by_name(config: dict[str, Any], named: str) -> None:
    with pytest.raises(InvalidInputError, match=named.replace("[", r"\[").replace("]", r"\]")):
        from_triton_config("m", config)


def test_model_yaml_configs_pass_unchanged() -> None:
    own = {"max_batch_size": 4, "dynamic_batching": {"max_queue_delay_us": 10}}
    parameters = {"config": json.dumps(own)}
    assert not is_triton_config(own)
    assert translate_load_parameters("m", parameters) is parameters
    assert translate_load_parameters("m", {}) == {}


def test_a_triton_config_is_told_apart_and_translated() -> None:
    assert is_triton_config({"dynamic_batching": {"max_queue_delay_microseconds": 5}})
    translated = translate_load_parameters("m", {"config": json.dumps(TRITON), "other": 1})
    assert translated["other"] == 1
    assert json.loads(translated["config"])["instances"] == 2
