from __future__ import annotations

import tritonclient.grpc.model_config_pb2 as triton_config_pb
from google.protobuf import json_format

from serval.core.dataplane import ModelConfigView
from serval.core.model_spec import ModelSpec
from serval.core.tensors.datatypes import DataType
from serval.core.types import ModelMetadata, TensorSpec
from serval.protocols.grpc.generated import model_config_pb2 as config_pb
from serval.protocols.grpc.messages import model_config, model_metadata
from serval.protocols.oip.triton_config import triton_model_config


def test_metadata_parameters_carry_runtime_parameters_and_signatures() -> None:
    metadata = ModelMetadata(
        name="m",
        versions=("1",),
        platform="python",
        inputs=(TensorSpec("x", DataType.FP32, (-1, 2)),),
        outputs=(TensorSpec("y", DataType.FP32, (-1,)),),
        signatures=("predict", "explain"),
        parameters={
            "feature_names": "a,b",
            "n_features": 2,
            "scaled": True,
            "alpha": 0.5,
            "seed": 2**64 - 1,
        },
    )
    message = model_metadata(metadata)
    # InferParameters as MLServer's and Seldon's field 6 holds them: their InferParameter has
    # only the bool, int64 and string members, so floats and huge integers go as text.
    assert {k: v.WhichOneof("parameter_choice") for k, v in message.parameters.items()} == {
        "feature_names": "string_param",
        "n_features": "int64_param",
        "scaled": "bool_param",
        "alpha": "string_param",
        "seed": "string_param",
        "signatures": "string_param",
    }
    assert message.parameters["alpha"].string_param == "0.5"
    assert message.parameters["feature_names"].string_param == "a,b"
    assert message.parameters["n_features"].int64_param == 2
    assert message.parameters["signatures"].string_param == "predict,explain"
    assert dict(model_metadata(metadata.__class__("m", (), "onnx", (), ())).parameters) == {}


def test_model_config_is_the_core_translation_and_triton_reads_it() -> None:
    metadata = ModelMetadata(
        name="m",
        versions=("1",),
        platform="onnxruntime_onnx",
        inputs=(TensorSpec("x", DataType.FP32, (-1, 2)),),
        outputs=(TensorSpec("y", DataType.BYTES, (-1, 1)),),
    )
    spec = ModelSpec.parse(
        {
            "max_batch_size": 8,
            "instances": 2,
            "dynamic_batching": {
                "mode": "adaptive",
                "latency_slo_ms": 100,
                "max_queue_size": 16,
                "priority_levels": 2,
                "default_priority_level": 1,
            },
        },
        source="m/model.yaml",
    )
    doc = triton_model_config(ModelConfigView(metadata, spec))
    config = model_config(ModelConfigView(metadata, spec)).config
    assert config == json_format.ParseDict(doc, config_pb.ModelConfig())
    assert (config.instance_group[0].kind, config.instance_group[0].count) == (
        config_pb.ModelInstanceGroup.KIND_CPU,
        2,
    )
    assert config.WhichOneof("scheduling_choice") == "dynamic_batching"
    assert config.dynamic_batching.default_queue_policy.max_queue_size == 16
    assert config.parameters["serval.dynamic_batching.mode"].string_value == "adaptive"
    # Triton's own message (all of its fields) reads the same document and the same bytes.
    theirs = json_format.ParseDict(doc, triton_config_pb.ModelConfig())
    assert theirs == triton_config_pb.ModelConfig.FromString(config.SerializeToString())
    assert theirs.dynamic_batching.priority_levels == 2
    assert theirs.instance_group[0].name == "m_0"
