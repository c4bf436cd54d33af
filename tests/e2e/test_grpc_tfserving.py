"""TF Serving's gRPC API (``tensorflow.serving.PredictionService`` and ``ModelService``)
against the real server.

The client is built from the protos of ``tensorflow-serving-api`` as serval vendors them
(proto/tensorflow*, the same package, message and field names and numbers): the package's
own generated modules import TensorFlow's protos from ``tensorflow`` itself, so they cannot be
imported without TensorFlow. tests/e2e/test_grpc_tfserving_api.py runs the package's own stubs
where it is installed.
"""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import numpy as np
import pytest

from serval.core.tensors.datatypes import DataType
from serval.protocols.grpc.generated.tensorflow.core.framework import tensor_pb2, types_pb2
from serval.protocols.grpc.generated.tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)
from serval.testing import run_server
from tests.e2e.tfserving_models import SHOUT
from tests.onnx_models import identity, linear, write_model
from tests.runtimes.builders import write_python_model

pytestmark = pytest.mark.e2e


class Client:
    def __init__(self, channel: grpc.Channel) -> None:
        self.prediction = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        self.models = model_service_pb2_grpc.ModelServiceStub(channel)


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    repo = tmp_path_factory.mktemp("repo")
    write_model(repo, "linear", 1, linear([1.0, 2.0], 0.0))
    write_model(repo, "linear", 2, linear([10.0, 20.0], 1.0))
    (repo / "linear" / "model.yaml").write_text(
        "version_policy: {latest: 2}\nlabels: {stable: 1, canary: 2}\n"
    )
    write_model(repo, "text", 1, identity(DataType.BYTES))
    write_python_model(repo / "shout" / "1", SHOUT)
    with run_server(repo) as server, grpc.insecure_channel(server.grpc_address) as channel:
        yield Client(channel)


def _fp32(values: list[list[float]], *, content: bool = True) -> tensor_pb2.TensorProto:
    array = np.asarray(values, dtype=np.float32)
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT)
    for size in array.shape:
        proto.tensor_shape.dim.add(size=size)
    if content:
        proto.tensor_content = array.tobytes()
    else:
        proto.float_val.extend(array.ravel().tolist())
    return proto


def _strings(values: list[bytes]) -> tensor_pb2.TensorProto:
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING, string_val=values)
    proto.tensor_shape.dim.add(size=len(values))
    return proto


def _shape(proto: tensor_pb2.TensorProto) -> list[int]:
    return [dim.size for dim in proto.tensor_shape.dim]


def _predict(model: str, **inputs: tensor_pb2.TensorProto) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    for name, tensor in inputs.items():
        request.inputs[name].CopyFrom(tensor)
    return request


def test_predict_fp32_tensor_content_and_float_val(client: Client) -> None:
    for content in (True, False):
        request = _predict("linear", x=_fp32([[1, 1], [0, 1]], content=content))
        reply = client.prediction.Predict(request, timeout=30)
        y = reply.outputs["y"]
        assert y.dtype == types_pb2.DT_FLOAT
        assert _shape(y) == [2, 1]
        assert list(y.float_val) == [31.0, 21.0]  # version 2, the latest
        assert reply.model_spec.name == "linear"
        assert reply.model_spec.version.value == 2
        assert reply.model_spec.signature_name == "serving_default"


def test_a_single_value_fills_the_shape_as_tensorflow_does(client: Client) -> None:
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, float_val=[1.0])
    proto.tensor_shape.dim.add(size=3)
    proto.tensor_shape.dim.add(size=2)
    reply = client.prediction.Predict(_predict("linear", x=proto), timeout=30)
    assert list(reply.outputs["y"].float_val) == [31.0, 31.0, 31.0]


def test_versions_and_labels(client: Client) -> None:
    request = _predict("linear", x=_fp32([[1, 1]]))
    request.model_spec.version.value = 1
    reply = client.prediction.Predict(request, timeout=30)
    assert list(reply.outputs["y"].float_val) == [3.0]
    assert reply.model_spec.version.value == 1

    for label, expected, version in (("stable", 3.0, 1), ("canary", 31.0, 2)):
        request = _predict("linear", x=_fp32([[1, 1]]))
        request.model_spec.version_label = label
        reply = client.prediction.Predict(request, timeout=30)
        assert list(reply.outputs["y"].float_val) == [expected]
        assert reply.model_spec.version.value == version

    request.model_spec.version_label = "nightly"
    with pytest.raises(grpc.RpcError) as caught:
        client.prediction.Predict(request, timeout=30)
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND
    assert "nightly" in (caught.value.details() or "")


def test_predict_strings(client: Client) -> None:
    values = [b"a", "é b".encode(), b""]
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING, string_val=values)
    proto.tensor_shape.dim.add(size=1)
    proto.tensor_shape.dim.add(size=3)
    reply = client.prediction.Predict(_predict("text", INPUT0=proto), timeout=30)
    out = reply.outputs["OUTPUT0"]
    assert out.dtype == types_pb2.DT_STRING
    assert _shape(out) == [1, 3]
    assert list(out.string_val) == [b"a", "é b".encode(), b""]


def test_signature_name_selects_a_python_signature(client: Client) -> None:
    for signature in ("", "serving_default", "predict"):
        request = _predict("shout", text=_strings([b"hi", b"hello"]))
        request.model_spec.signature_name = signature
        reply = client.prediction.Predict(request, timeout=30)
        assert list(reply.outputs) == ["loud"]
        assert list(reply.outputs["loud"].string_val) == [b"HI!", b"HELLO!"]

    request.model_spec.signature_name = "length"
    reply = client.prediction.Predict(request, timeout=30)
    assert list(reply.outputs) == ["length"]
    assert reply.outputs["length"].dtype == types_pb2.DT_INT64
    assert list(reply.outputs["length"].int64_val) == [2, 5]
    assert reply.model_spec.signature_name == "length"


@pytest.mark.parametrize(("model", "inputs"), [("shout", "text"), ("linear", "x")])
def test_an_unknown_signature_is_invalid_argument(client: Client, model: str, inputs: str) -> None:
    tensor = _strings([b"hi"]) if model == "shout" else _fp32([[1, 1]])
    request = _predict(model, **{inputs: tensor})
    request.model_spec.signature_name = "classify_it"
    with pytest.raises(grpc.RpcError) as caught:
        client.prediction.Predict(request, timeout=30)
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    details = caught.value.details() or ""
    assert "classify_it" in details
    assert "serving_default" in details


def test_output_filter(client: Client) -> None:
    request = _predict("linear", x=_fp32([[1, 1]]))
    request.output_filter.append("y")
    assert list(client.prediction.Predict(request, timeout=30).outputs) == ["y"]
    request.output_filter[:] = ["z"]
    with pytest.raises(grpc.RpcError) as caught:
        client.prediction.Predict(request, timeout=30)
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT


def test_predict_errors(client: Client) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        client.prediction.Predict(_predict("nope", x=_fp32([[1, 1]])), timeout=30)
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND
    assert "nope" in (caught.value.details() or "")

    wrong_type = tensor_pb2.TensorProto(dtype=types_pb2.DT_COMPLEX64)
    with pytest.raises(grpc.RpcError) as caught:
        client.prediction.Predict(_predict("linear", x=wrong_type), timeout=30)
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "DT_COMPLEX64" in (caught.value.details() or "")

    short = _fp32([[1, 1]])
    short.tensor_content = short.tensor_content[:-1]
    with pytest.raises(grpc.RpcError) as caught:
        client.prediction.Predict(_predict("linear", x=short), timeout=30)
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "tensor_content" in (caught.value.details() or "")

    with pytest.raises(grpc.RpcError) as caught:
        client.prediction.Predict(predict_pb2.PredictRequest(), timeout=30)
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT


def _signatures(reply: get_model_metadata_pb2.GetModelMetadataResponse) -> dict[str, object]:
    found = get_model_metadata_pb2.SignatureDefMap()
    assert reply.metadata["signature_def"].Unpack(found)
    return dict(found.signature_def)


def test_get_model_metadata(client: Client) -> None:
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = "linear"
    reply = client.prediction.GetModelMetadata(request, timeout=30)
    assert reply.model_spec.name == "linear"
    assert reply.model_spec.version.value == 2
    assert reply.metadata["signature_def"].type_url.endswith("tensorflow.serving.SignatureDefMap")
    signatures = _signatures(reply)
    assert list(signatures) == ["serving_default"]
    default = signatures["serving_default"]
    assert default.method_name == "tensorflow/serving/predict"  # type: ignore[attr-defined]
    x = default.inputs["x"]  # type: ignore[attr-defined]
    assert x.name == "x"
    assert x.dtype == types_pb2.DT_FLOAT
    assert [d.size for d in x.tensor_shape.dim] == [-1, 2]
    assert default.outputs["y"].dtype == types_pb2.DT_FLOAT  # type: ignore[attr-defined]

    request.model_spec.version_label = "stable"
    assert client.prediction.GetModelMetadata(request, timeout=30).model_spec.version.value == 1

    request.model_spec.name = "shout"
    request.model_spec.ClearField("version_label")
    signatures = _signatures(client.prediction.GetModelMetadata(request, timeout=30))
    assert sorted(signatures) == ["length", "serving_default"]
    assert signatures["length"].inputs["text"].dtype == types_pb2.DT_STRING  # type: ignore[attr-defined]

    request.model_spec.name = "nope"
    with pytest.raises(grpc.RpcError) as caught:
        client.prediction.GetModelMetadata(request, timeout=30)
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND

    request.model_spec.name = "linear"
    request.metadata_field[:] = ["graph_def"]
    with pytest.raises(grpc.RpcError) as caught:
        client.prediction.GetModelMetadata(request, timeout=30)
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT


def test_get_model_status(client: Client) -> None:
    available = get_model_status_pb2.ModelVersionStatus.AVAILABLE
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "linear"
    reply = client.models.GetModelStatus(request, timeout=30)
    states = {s.version: s.state for s in reply.model_version_status}
    assert states == {1: available, 2: available}
    assert all(s.status.error_code == 0 for s in reply.model_version_status)

    request.model_spec.version.value = 2
    reply = client.models.GetModelStatus(request, timeout=30)
    assert [(s.version, s.state) for s in reply.model_version_status] == [(2, available)]

    request.model_spec.version_label = "stable"
    reply = client.models.GetModelStatus(request, timeout=30)
    assert [s.version for s in reply.model_version_status] == [1]

    request.model_spec.version.value = 7
    with pytest.raises(grpc.RpcError) as caught:
        client.models.GetModelStatus(request, timeout=30)
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND

    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "nope"
    with pytest.raises(grpc.RpcError) as caught:
        client.models.GetModelStatus(request, timeout=30)
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND
