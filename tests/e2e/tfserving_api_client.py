"""Calls a server with tensorflow-serving-api's own stubs and prints what came back as JSON:
run by tests/e2e/test_grpc_tfserving_api.py in a subprocess, whose path holds the stubs'
``tensorflow`` protos (TensorFlow's, or the stand-in that test builds)."""

from __future__ import annotations

import json
import sys
from typing import Any

import grpc
import numpy as np
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)


def _error(call: Any, request: Any) -> str:
    try:
        call(request, timeout=30)
    except grpc.RpcError as exc:
        return f"{exc.code().name}: {exc.details()}"
    return "OK"


def main(address: str) -> dict[str, Any]:
    found: dict[str, Any] = {}
    with grpc.insecure_channel(address) as channel:
        prediction = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        models = model_service_pb2_grpc.ModelServiceStub(channel)

        x = np.array([[1, 1], [0, 1]], dtype=np.float32)
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "linear"
        tensor = request.inputs["x"]
        tensor.dtype = types_pb2.DT_FLOAT
        tensor.tensor_shape.dim.add(size=2)
        tensor.tensor_shape.dim.add(size=2)
        tensor.tensor_content = x.tobytes()
        reply = prediction.Predict(request, timeout=30)
        found["fp32"] = list(reply.outputs["y"].float_val)
        found["fp32_shape"] = [d.size for d in reply.outputs["y"].tensor_shape.dim]
        found["fp32_spec"] = [reply.model_spec.name, reply.model_spec.version.value]

        request.model_spec.version_label = "stable"
        found["label_stable"] = list(prediction.Predict(request, timeout=30).outputs["y"].float_val)

        text = predict_pb2.PredictRequest()
        text.model_spec.name = "shout"
        strings = tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING, string_val=[b"hi", b"yo"])
        strings.tensor_shape.dim.add(size=2)
        text.inputs["text"].CopyFrom(strings)
        found["strings"] = [
            v.decode() for v in prediction.Predict(text, timeout=30).outputs["loud"].string_val
        ]
        text.model_spec.signature_name = "length"
        found["signature"] = list(prediction.Predict(text, timeout=30).outputs["length"].int64_val)
        text.model_spec.signature_name = "nope"
        found["bad_signature"] = _error(prediction.Predict, text)

        unknown = predict_pb2.PredictRequest()
        unknown.model_spec.name = "missing"
        found["unknown_model"] = _error(prediction.Predict, unknown)

        metadata = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        metadata.model_spec.name = "linear"
        meta_reply = prediction.GetModelMetadata(metadata, timeout=30)
        signatures = get_model_metadata_pb2.SignatureDefMap()
        meta_reply.metadata["signature_def"].Unpack(signatures)
        default = signatures.signature_def["serving_default"]
        found["metadata"] = {
            "version": meta_reply.model_spec.version.value,
            "method": default.method_name,
            "x": [types_pb2.DataType.Name(default.inputs["x"].dtype)]
            + [d.size for d in default.inputs["x"].tensor_shape.dim],
        }

        status = get_model_status_pb2.GetModelStatusRequest()
        status.model_spec.name = "linear"
        found["status"] = sorted(
            (s.version, get_model_status_pb2.ModelVersionStatus.State.Name(s.state))
            for s in models.GetModelStatus(status, timeout=30).model_version_status
        )
    return found


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1])))
