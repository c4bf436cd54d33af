from __future__ import annotations

from serval.core.datatypes import DataType
from serval.core.types import ModelMetadata, TensorSpec
from serval.protocols.grpc.messages import model_metadata


def test_metadata_properties_carry_parameters_and_signatures() -> None:
    metadata = ModelMetadata(
        name="m",
        versions=("1",),
        platform="python",
        inputs=(TensorSpec("x", DataType.FP32, (-1, 2)),),
        outputs=(TensorSpec("y", DataType.FP32, (-1,)),),
        signatures=("predict", "explain"),
        parameters={"feature_names": "a,b"},
    )
    message = model_metadata(metadata)
    assert dict(message.properties) == {"feature_names": "a,b", "signatures": "predict,explain"}
    assert dict(model_metadata(metadata.__class__("m", (), "onnx", (), ())).properties) == {}
