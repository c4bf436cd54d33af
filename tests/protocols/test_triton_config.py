from __future__ import annotations

from typing import Any

import pytest

from serval.core.dataplane import ModelConfigView
from serval.core.model_spec import ModelSpec
from serval.core.tensors.datatypes import DataType
from serval.core.types import ModelMetadata, TensorSpec
from serval.protocols.oip.triton_config import config_datatype, triton_model_config


def view(name: str, spec: dict[str, Any], platform: str = "onnxruntime_onnx") -> ModelConfigView:
    metadata = ModelMetadata(
        name=name,
        versions=("1",),
        platform=platform,
        inputs=(TensorSpec("x", DataType.FP32, (-1, 4)),),
        outputs=(
            TensorSpec("probabilities", DataType.FP32, (-1, 3)),
            TensorSpec("label", DataType.BYTES, (-1,)),
        ),
    )
    return ModelConfigView(metadata, ModelSpec.parse(spec, source=f"{name}/model.yaml"))


def test_an_unbatched_model_keeps_full_dims_and_reports_no_queue() -> None:
    config = triton_model_config(view("plain", {"parameters": {"threshold": 0.5, "strict": True}}))
    assert config == {
        "name": "plain",
        "platform": "onnxruntime_onnx",
        "backend": "onnxruntime",
        "version_policy": {"latest": {"num_versions": 1}},
        "max_batch_size": 0,
        "input": [{"name": "x", "data_type": "TYPE_FP32", "dims": [-1, 4]}],
        "output": [
            {"name": "probabilities", "data_type": "TYPE_FP32", "dims": [-1, 3]},
            {"name": "label", "data_type": "TYPE_STRING", "dims": [-1]},
        ],
        "parameters": {
            "threshold": {"string_value": "0.5"},
            "strict": {"string_value": "true"},
        },
    }


def test_a_batched_model_reports_dynamic_batching_and_its_instances() -> None:
    spec = {
        "max_batch_size": 32,
        "instances": 2,
        "version_policy": {"specific": [1, 3]},
        "dynamic_batching": {
            "max_queue_delay_us": 500,
            "preferred_batch_sizes": [16, 8],
            "max_queue_size": 256,
            "priority_levels": 3,
            "default_priority_level": 2,
        },
    }
    config = triton_model_config(view("classifier", spec))
    assert config["max_batch_size"] == 32
    assert config["version_policy"] == {"specific": {"versions": [1, 3]}}
    assert [t["dims"] for t in config["input"] + config["output"]] == [[4], [3], []]
    assert config["instance_group"] == [{"name": "classifier_0", "kind": "KIND_CPU", "count": 2}]
    assert config["dynamic_batching"] == {
        "preferred_batch_size": [8, 16],
        "max_queue_delay_microseconds": 500,
        "priority_levels": 3,
        "default_priority_level": 2,
        "default_queue_policy": {"max_queue_size": 256},
    }
    assert config["parameters"] == {"serval.dynamic_batching.mode": {"string_value": "fixed"}}


def test_adaptive_mode_goes_into_parameters() -> None:
    spec = {
        "max_batch_size": 8,
        "dynamic_batching": {"mode": "adaptive", "latency_slo_ms": 250, "priority_levels": 2},
        "parameters": {"owner": "ml"},
    }
    config = triton_model_config(view("adaptive", spec))
    assert config["instance_group"] == [{"name": "adaptive_0", "kind": "KIND_CPU", "count": 1}]
    assert config["dynamic_batching"] == {
        "preferred_batch_size": [],
        "max_queue_delay_microseconds": 0,
        "priority_levels": 2,
        "default_priority_level": 2,  # model.yaml's 0: the lowest level
        "default_queue_policy": {"max_queue_size": 0},
    }
    assert config["parameters"] == {
        "owner": {"string_value": "ml"},
        "serval.dynamic_batching.mode": {"string_value": "adaptive"},
        "serval.dynamic_batching.latency_slo_ms": {"string_value": "250.0"},
    }


def test_max_batch_size_alone_reports_the_default_batcher() -> None:
    config = triton_model_config(view("mixed", {"max_batch_size": 4}))
    assert config["instance_group"] == [{"name": "mixed_0", "kind": "KIND_CPU", "count": 1}]
    assert config["dynamic_batching"] == {
        "preferred_batch_size": [],
        "max_queue_delay_microseconds": 0,
        "priority_levels": 0,
        "default_priority_level": 0,
        "default_queue_policy": {"max_queue_size": 0},
    }


@pytest.mark.parametrize(
    ("spec", "batching"),
    [
        ({"instances": 3}, False),  # a queue of its own, no batching
        ({"dynamic_batching": {"max_queue_size": 4}}, True),  # a bounded queue, no batching
    ],
)
def test_an_unbatched_model_with_a_queue(spec: dict[str, Any], batching: bool) -> None:
    config = triton_model_config(view("queued", spec))
    assert config["max_batch_size"] == 0
    assert config["instance_group"] == [
        {"name": "queued_0", "kind": "KIND_CPU", "count": spec.get("instances", 1)}
    ]
    assert ("dynamic_batching" in config) is batching
    assert config["input"][0]["dims"] == [-1, 4]


def test_serval_keys_take_the_place_of_a_parameter_with_their_name() -> None:
    spec = {"max_batch_size": 2, "parameters": {"serval.dynamic_batching.mode": "mine"}}
    config = triton_model_config(view("m", spec))
    assert config["parameters"] == {"serval.dynamic_batching.mode": {"string_value": "fixed"}}


def test_backend_is_the_platform_framework_and_bytes_is_type_string() -> None:
    assert triton_model_config(view("p", {}, platform="python"))["backend"] == "python"
    assert triton_model_config(view("s", {}, platform="sklearn_skops"))["backend"] == "sklearn"
    assert config_datatype(DataType.BYTES) == "TYPE_STRING"
    assert {config_datatype(d) for d in DataType} >= {"TYPE_BOOL", "TYPE_FP16", "TYPE_UINT64"}
