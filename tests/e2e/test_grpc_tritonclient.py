"""gRPC end to end: the real server subprocess, called with tritonclient.grpc (sync), with
serval's generated stub (typed contents, which tritonclient never sends), and through the
standard health and reflection services."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from tritonclient.utils import InferenceServerException

from serval.protocols.grpc.generated import grpc_service_pb2 as pb
from serval.protocols.grpc.generated import grpc_service_pb2_grpc as pb_grpc
from serval.testing import RunningServer, run_server
from tests.e2e.grpc_models import build_repository

pytestmark = pytest.mark.e2e

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    repository = build_repository(tmp_path_factory.mktemp("repository"))
    with run_server(repository) as running:
        yield running


@pytest.fixture(scope="module")
def client(server: RunningServer) -> Iterator[triton.InferenceServerClient]:
    with triton.InferenceServerClient(server.grpc_address) as client:
        yield client


@pytest.fixture(scope="module")
def channel(server: RunningServer) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(server.grpc_address) as channel:
        yield channel


@pytest.fixture(scope="module")
def stub(channel: grpc.Channel) -> pb_grpc.GRPCInferenceServiceStub:
    return pb_grpc.GRPCInferenceServiceStub(channel)


def infer_input(name: str, data: np.ndarray, datatype: str) -> triton.InferInput:
    tensor = triton.InferInput(name, list(data.shape), datatype)
    tensor.set_data_from_numpy(data)
    return tensor


def status_of(call: Any, *args: Any, **kwargs: Any) -> tuple[str, str]:
    with pytest.raises(InferenceServerException) as info:
        call(*args, **kwargs)
    return str(info.value.status()), info.value.message()


def rpc_status_of(call: Any, *args: Any, **kwargs: Any) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as info:
        call(*args, **kwargs)
    return info.value.code(), info.value.details()


SAMPLES: dict[str, tuple[str, np.ndarray]] = {
    "FP32": ("identity_fp32", np.array([[1.5, -2.0, 3.0], [0.0, 1e-7, -1e30]], np.float32)),
    "INT64": ("identity_int64", np.array([[2**62, -(2**63), 0], [1, 2, 3]], np.int64)),
    "BOOL": ("identity_bool", np.array([[True, False, True], [False, False, True]])),
    "BYTES": (
        "identity_bytes",
        np.array([[b"a", b"", "ü".encode()], [b"xyz", b"0", b"\t"]], dtype=np.object_),
    ),
    "FP16": ("identity_fp16", np.array([[0.5, -1.0, 65504.0], [0.0, 1.0, 2.0]], np.float16)),
}


# -- health and metadata ---------------------------------------------------------------------


def test_health(client: triton.InferenceServerClient) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("add_sub")
    assert client.is_model_ready("versioned", "1")
    assert not client.is_model_ready("versioned", "3")


def test_grpc_health_probe(channel: grpc.Channel) -> None:
    """What grpc_health_probe and Kubernetes gRPC probes send."""
    health = health_pb2_grpc.HealthStub(channel)
    assert health.Check(health_pb2.HealthCheckRequest(service="")).status == SERVING
    assert health.Check(health_pb2.HealthCheckRequest(service="add_sub")).status == SERVING
    code, _ = rpc_status_of(health.Check, health_pb2.HealthCheckRequest(service="nope"))
    assert code == grpc.StatusCode.NOT_FOUND


def test_reflection_lists_services(channel: grpc.Channel) -> None:
    reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    (answer,) = reflection.ServerReflectionInfo(iter([request]))
    assert {s.name for s in answer.list_services_response.service} >= {
        "inference.GRPCInferenceService",
        "grpc.health.v1.Health",
    }


def test_server_metadata(client: triton.InferenceServerClient) -> None:
    metadata = client.get_server_metadata(as_json=True)
    assert metadata["name"] == "serval"
    assert metadata["version"]
    assert {"model_repository", "statistics"} <= set(metadata["extensions"])


def test_model_metadata(client: triton.InferenceServerClient) -> None:
    metadata = client.get_model_metadata("add_sub", as_json=True)
    assert metadata["name"] == "add_sub"
    assert metadata["platform"] == "onnxruntime_onnx"
    assert [(t["name"], t["datatype"], t["shape"]) for t in metadata["inputs"]] == [
        ("INPUT0", "FP32", ["-1", "4"]),
        ("INPUT1", "FP32", ["-1", "4"]),
    ]
    assert [t["name"] for t in metadata["outputs"]] == ["OUTPUT0", "OUTPUT1"]
    assert client.get_model_metadata("versioned", as_json=True)["versions"] == ["1", "2"]
    assert client.get_model_metadata("versioned", "1", as_json=True)["name"] == "versioned"


def test_model_config(client: triton.InferenceServerClient) -> None:
    config = client.get_model_config("identity_bytes", as_json=True)["config"]
    assert config["name"] == "identity_bytes"
    assert config["platform"] == "onnxruntime_onnx"
    assert config["input"] == [{"name": "INPUT0", "data_type": "TYPE_STRING", "dims": ["-1", "-1"]}]
    assert config["backend"] == "onnxruntime"
    assert "dynamic_batching" not in config
    assert "instance_group" not in config


# -- inference -------------------------------------------------------------------------------


@pytest.mark.parametrize("datatype", SAMPLES)
def test_infer_raw_every_datatype(client: triton.InferenceServerClient, datatype: str) -> None:
    model, data = SAMPLES[datatype]
    result = client.infer(model, [infer_input("INPUT0", data, datatype)])
    output = result.get_output("OUTPUT0")
    assert (output.datatype, list(output.shape)) == (datatype, list(data.shape))
    got = result.as_numpy("OUTPUT0")
    assert got.tolist() == data.tolist()


def _typed(model: str, datatype: str, data: np.ndarray, member: str) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name=model, id="typed")
    tensor = request.inputs.add(name="INPUT0", datatype=datatype, shape=list(data.shape))
    getattr(tensor.contents, member).extend(data.ravel().tolist())
    return request


TYPED = {
    "FP32": "fp32_contents",
    "INT64": "int64_contents",
    "BOOL": "bool_contents",
    "BYTES": "bytes_contents",
}


@pytest.mark.parametrize("datatype", TYPED)
def test_infer_typed_contents(stub: pb_grpc.GRPCInferenceServiceStub, datatype: str) -> None:
    model, data = SAMPLES[datatype]
    response = stub.ModelInfer(_typed(model, datatype, data, TYPED[datatype]))
    assert response.id == "typed"
    (output,) = response.outputs
    assert (output.name, output.datatype, list(output.shape)) == (
        "OUTPUT0",
        datatype,
        list(data.shape),
    )
    # The answer is raw, as Triton's; tritonclient's InferResult decodes it.
    result = triton.InferResult(response)
    assert result.as_numpy("OUTPUT0").tolist() == data.tolist()


def test_add_sub_output_selection_id_and_parameters(client: triton.InferenceServerClient) -> None:
    a = np.arange(8, dtype=np.float32).reshape(2, 4)
    b = np.full((2, 4), 0.5, dtype=np.float32)
    inputs = [infer_input("INPUT0", a, "FP32"), infer_input("INPUT1", b, "FP32")]
    both = client.infer("add_sub", inputs, request_id="r-1", parameters={"note": "x"})
    assert both.get_response().id == "r-1"
    np.testing.assert_array_equal(both.as_numpy("OUTPUT0"), a + b)
    np.testing.assert_array_equal(both.as_numpy("OUTPUT1"), a - b)

    only = client.infer("add_sub", inputs, outputs=[triton.InferRequestedOutput("OUTPUT1")])
    assert [o.name for o in only.get_response().outputs] == ["OUTPUT1"]
    assert only.as_numpy("OUTPUT0") is None
    np.testing.assert_array_equal(only.as_numpy("OUTPUT1"), a - b)


def test_explicit_versions(client: triton.InferenceServerClient) -> None:
    data = np.array([10.0, 20.0], dtype=np.float32)
    for version, offset in (("1", 1.0), ("2", 2.0), ("", 2.0)):
        result = client.infer(
            "versioned", [infer_input("INPUT0", data, "FP32")], model_version=version
        )
        assert result.get_response().model_version == (version or "2")
        assert result.as_numpy("OUTPUT0").tolist() == (data + offset).tolist()


def test_16_mib_tensor(client: triton.InferenceServerClient) -> None:
    data = np.random.default_rng(7).random((1024, 4096), dtype=np.float32)
    assert data.nbytes == 16 * 2**20
    result = client.infer("identity_fp32", [infer_input("INPUT0", data, "FP32")])
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), data)


def test_rest_serves_beside_grpc(
    server: RunningServer, client: triton.InferenceServerClient
) -> None:
    assert httpx.get(f"{server.http_url}/v2/models/add_sub/ready").status_code == 200
    assert client.is_model_ready("add_sub")


# -- repository and statistics ---------------------------------------------------------------


def test_repository_unload_and_load(
    client: triton.InferenceServerClient, channel: grpc.Channel
) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    client.unload_model("scratch")
    assert not client.is_model_ready("scratch")
    assert health.Check(health_pb2.HealthCheckRequest(service="scratch")).status == NOT_SERVING
    index = {
        (m["name"], m.get("version", "")): m
        for m in client.get_model_repository_index(as_json=True)["models"]
    }
    assert index[("scratch", "1")]["state"] == "UNAVAILABLE"
    assert index[("add_sub", "1")]["state"] == "READY"

    client.load_model("scratch")
    assert client.is_model_ready("scratch")
    assert health.Check(health_pb2.HealthCheckRequest(service="scratch")).status == SERVING
    data = np.ones((1, 2), np.float32)
    result = client.infer("scratch", [infer_input("INPUT0", data, "FP32")])
    assert result.as_numpy("OUTPUT0").tolist() == data.tolist()


def test_statistics(client: triton.InferenceServerClient) -> None:
    before = client.get_inference_statistics("versioned", "1", as_json=True)["model_stats"][0]
    data = np.zeros(3, np.float32)
    for _ in range(2):
        client.infer("versioned", [infer_input("INPUT0", data, "FP32")], model_version="1")
    after = client.get_inference_statistics("versioned", "1", as_json=True)["model_stats"][0]
    assert (after["name"], after["version"]) == ("versioned", "1")
    assert int(after["execution_count"]) - int(before.get("execution_count", 0)) == 2
    success = after["inference_stats"]["success"]
    assert int(success["count"]) - int(before["inference_stats"]["success"].get("count", 0)) == 2
    assert int(success["ns"]) > 0
    assert int(after["inference_stats"]["compute_infer"]["ns"]) > 0
    everything = client.get_inference_statistics(as_json=True)["model_stats"]
    assert {"add_sub", "identity_fp32", "versioned"} <= {s["name"] for s in everything}


# -- errors, each with its status ------------------------------------------------------------


def _fp32(name: str = "INPUT0", shape: tuple[int, ...] = (1, 3)) -> triton.InferInput:
    return infer_input(name, np.zeros(shape, np.float32), "FP32")


TRITON_ERRORS: dict[str, tuple[Any, str, str]] = {
    "unknown model": (lambda c: c.infer("nope", [_fp32()]), "NOT_FOUND", "nope"),
    "unknown version": (
        lambda c: c.infer("identity_fp32", [_fp32()], model_version="9"),
        "NOT_FOUND",
        "version 9",
    ),
    "version not a number": (
        lambda c: c.infer("identity_fp32", [_fp32()], model_version="v1"),
        "INVALID_ARGUMENT",
        "positive integer",
    ),
    "unknown input": (
        lambda c: c.infer("identity_fp32", [_fp32("X")]),
        "INVALID_ARGUMENT",
        "unknown input 'X'",
    ),
    "missing input": (
        lambda c: c.infer("add_sub", [_fp32(shape=(1, 4))]),
        "INVALID_ARGUMENT",
        "missing input",
    ),
    "wrong datatype": (
        lambda c: c.infer(
            "identity_fp32", [infer_input("INPUT0", np.zeros((1, 1), np.int64), "INT64")]
        ),
        "INVALID_ARGUMENT",
        "expected datatype FP32",
    ),
    "wrong shape": (
        lambda c: c.infer("add_sub", [_fp32(shape=(1, 3)), _fp32("INPUT1", (1, 3))]),
        "INVALID_ARGUMENT",
        "expected shape [-1, 4]",
    ),
    "unknown output": (
        lambda c: c.infer(
            "identity_fp32", [_fp32()], outputs=[triton.InferRequestedOutput("NOPE")]
        ),
        "INVALID_ARGUMENT",
        "unknown output 'NOPE'",
    ),
    "bytes not utf-8 for an ONNX string": (
        lambda c: c.infer(
            "identity_bytes",
            [infer_input("INPUT0", np.array([[b"\xff"]], dtype=np.object_), "BYTES")],
        ),
        "INVALID_ARGUMENT",
        "UTF-8",
    ),
    "metadata of unknown model": (lambda c: c.get_model_metadata("nope"), "NOT_FOUND", "nope"),
    "model ready of unknown model": (lambda c: c.is_model_ready("nope"), "NOT_FOUND", "nope"),
    "config of unknown model": (lambda c: c.get_model_config("nope"), "NOT_FOUND", "nope"),
    "statistics of unknown model": (
        lambda c: c.get_inference_statistics("nope"),
        "NOT_FOUND",
        "nope",
    ),
    "load unknown model": (lambda c: c.load_model("nope"), "NOT_FOUND", "nope"),
    "load with a bad config": (
        lambda c: c.load_model("scratch", config='{"max_batch": 1}'),
        "INVALID_ARGUMENT",
        "max_batch: unknown key",
    ),
    "load with file overrides": (
        lambda c: c.load_model("scratch", config="{}", files={"file:1/model.onnx": b"x"}),
        "INVALID_ARGUMENT",  # as over REST (400): the control plane decides
        "file overrides",
    ),
    "unload unknown model": (lambda c: c.unload_model("nope"), "NOT_FOUND", "nope"),
    "unimplemented Triton RPC": (
        lambda c: c.get_system_shared_memory_status(),
        "UNIMPLEMENTED",
        "",
    ),
}


@pytest.mark.parametrize("case", TRITON_ERRORS, ids=list(TRITON_ERRORS))
def test_errors(client: triton.InferenceServerClient, case: str) -> None:
    call, code, words = TRITON_ERRORS[case]
    status, message = status_of(call, client)
    assert status == f"StatusCode.{code}"
    assert words in message


def test_deadline_exceeded(client: triton.InferenceServerClient) -> None:
    data = np.zeros((256, 4096), np.float32)
    status, _ = status_of(
        client.infer,
        "identity_fp32",
        [infer_input("INPUT0", data, "FP32")],
        client_timeout=0.000_001,
    )
    assert status == "StatusCode.DEADLINE_EXCEEDED"


def test_message_over_64_mib_is_resource_exhausted(client: triton.InferenceServerClient) -> None:
    data = np.zeros((65, 2**18), np.float32)  # 65 MiB
    status, _ = status_of(client.infer, "identity_fp32", [infer_input("INPUT0", data, "FP32")])
    assert status == "StatusCode.RESOURCE_EXHAUSTED"


def _raw(model: str, datatype: str, shape: list[int], raw: bytes) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name=model)
    request.inputs.add(name="INPUT0", datatype=datatype, shape=shape)
    request.raw_input_contents.append(raw)
    return request


def _mixed() -> pb.ModelInferRequest:
    request = _raw("add_sub", "FP32", [1, 4], bytes(16))
    request.inputs.add(
        name="INPUT1",
        datatype="FP32",
        shape=[1, 4],
        contents=pb.InferTensorContents(fp32_contents=[0.0] * 4),
    )
    request.raw_input_contents.append(bytes(16))
    return request


STUB_ERRORS: dict[str, tuple[pb.ModelInferRequest, str]] = {
    "raw size vs shape": (
        _raw("identity_fp32", "FP32", [2, 2], bytes(12)),
        "needs 16 bytes, received 12",
    ),
    "unknown datatype": (_raw("identity_fp32", "FLOAT32", [1], bytes(4)), "unknown datatype"),
    "raw and typed mixed": (_mixed(), "no input may set contents"),
    "typed member for another datatype": (
        _typed("identity_int64", "INT64", np.zeros((1, 2)), "fp32_contents"),
        "takes its data in contents.int64_contents",
    ),
    "typed count vs shape": (
        pb.ModelInferRequest(
            model_name="identity_fp32",
            inputs=[
                pb.ModelInferRequest.InferInputTensor(
                    name="INPUT0",
                    datatype="FP32",
                    shape=[1, 3],
                    contents=pb.InferTensorContents(fp32_contents=[1.0]),
                )
            ],
        ),
        "holds 1 elements but shape [1, 3] needs 3",
    ),
    "FP16 in typed contents": (
        _typed("identity_fp16", "FP16", np.zeros((1, 1)), "fp32_contents"),
        "send it in raw",
    ),
    "raw BYTES truncated": (
        _raw("identity_bytes", "BYTES", [1, 1], b"\x05\0\0\0ab"),
        "declares 5 bytes",
    ),
}


@pytest.mark.parametrize("case", STUB_ERRORS, ids=list(STUB_ERRORS))
def test_decoding_errors_are_invalid_argument(
    stub: pb_grpc.GRPCInferenceServiceStub, case: str
) -> None:
    request, words = STUB_ERRORS[case]
    code, details = rpc_status_of(stub.ModelInfer, request)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert words in details


def test_empty_model_name_is_invalid_argument(stub: pb_grpc.GRPCInferenceServiceStub) -> None:
    code, details = rpc_status_of(stub.ModelInfer, pb.ModelInferRequest())
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "model_name is empty" in details


def test_server_log_has_no_tracebacks(server: RunningServer) -> None:
    """Client mistakes above are answered, never crash a handler."""
    assert "Traceback" not in server.log()
