"""The real server through other servers' clients and protos: MLServer's and Seldon Core 2's
ModelMetadataResponse (field 6 as ``map<string, InferParameter> parameters``), Triton's,
KServe's SDK (gRPC repository calls, V1 liveness and ``:explain``), and the standard gRPC
conventions (reflection v1, health ``List``).

KServe's SDK ships ``inference.*`` messages in protobuf's default pool, as ``tritonclient.grpc``
does, and protobuf refuses two definitions of one name in a process: the SDK runs in a
subprocess. MLServer cannot be installed beside KServe (their starlette pins exclude each
other), so its messages are compiled here from the fields its published dataplane.proto
defines; where ``mlserver`` is installed its own generated classes decode the bytes too.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
import tritonclient.grpc as triton
import tritonclient.grpc.service_pb2 as triton_pb
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from serval.protocols.grpc.generated import grpc_health_v1_pb2 as health_v1
from serval.protocols.grpc.generated import grpc_health_v1_pb2_grpc as health_v1_grpc
from serval.protocols.grpc.generated import grpc_reflection_v1_pb2 as reflection_v1
from serval.protocols.grpc.generated import grpc_reflection_v1_pb2_grpc as reflection_v1_grpc
from serval.protocols.grpc.generated import grpc_service_pb2 as pb
from serval.testing import RunningServer, run_server
from tests.e2e.grpc_models import build_repository
from tests.e2e.test_mlserver_codecs import mlserver_python
from tests.runtimes.builders import write_python_model

pytestmark = pytest.mark.e2e

METADATA_RPC = "/inference.GRPCInferenceService/ModelMetadata"

# A Python model with two signatures: its metadata carries a parameter ("signatures").
TWO_SIGNATURES = """
    from serval import ServingModel, TensorInfo, signature


    class Doubler(ServingModel):
        inputs = [TensorInfo("x", "FP64")]
        outputs = [TensorInfo("y", "FP64")]

        def predict(self, data):
            return {"y": [v * 2 for v in data["x"]]}

        @signature(outputs=[TensorInfo("z", "FP64")])
        def halve(self, data):
            return {"z": [v / 2 for v in data["x"]]}
"""

# The messages of MLServer's (and Seldon Core 2's, identical here) dataplane.proto that a
# ModelMetadata call decodes, with their published field numbers and types: field 6 and
# TensorMetadata's field 4 are map<string, InferParameter>, whose InferParameter has only the
# bool, int64 and string members.
MLSERVER_METADATA_PROTO = """
    syntax = "proto3";
    package mlserver_shape;

    message InferParameter {
      oneof parameter_choice {
        bool bool_param = 1;
        int64 int64_param = 2;
        string string_param = 3;
      }
    }

    message ModelMetadataResponse {
      message TensorMetadata {
        string name = 1;
        string datatype = 2;
        repeated int64 shape = 3;
        map<string, InferParameter> parameters = 4;
      }
      string name = 1;
      repeated string versions = 2;
      string platform = 3;
      repeated TensorMetadata inputs = 4;
      repeated TensorMetadata outputs = 5;
      map<string, InferParameter> parameters = 6;
    }
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    repository = build_repository(tmp_path_factory.mktemp("repository"))
    write_python_model(repository / "doubler" / "1", TWO_SIGNATURES)
    with run_server(repository) as running:
        yield running


@pytest.fixture(scope="module")
def channel(server: RunningServer) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(server.grpc_address) as channel:
        yield channel


def _metadata_bytes(channel: grpc.Channel, name: str) -> bytes:
    """The server's ModelMetadataResponse as it comes off the wire, decoded by nobody yet."""
    call = channel.unary_unary(
        METADATA_RPC, request_serializer=pb.ModelMetadataRequest.SerializeToString
    )
    raw: bytes = call(pb.ModelMetadataRequest(name=name), timeout=10)
    return raw


def _compile(proto_text: str, tmp_path: Path) -> descriptor_pool.DescriptorPool:
    """``proto_text`` through protoc into a pool of its own (not protobuf's default pool,
    where tritonclient's ``inference.*`` messages live)."""

    (tmp_path / "peer.proto").write_text(textwrap.dedent(proto_text))
    out = tmp_path / "peer.pb"
    # protoc in a process of its own: grpc_tools' protobuf runtime crashes a process that
    # has loaded TensorFlow's (earlier tests do).
    command = [
        sys.executable, "-m", "grpc_tools.protoc", f"-I{tmp_path}",
        f"--descriptor_set_out={out}", str(tmp_path / "peer.proto"),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, f"protoc failed: {done.stderr}"
    files = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    pool = descriptor_pool.DescriptorPool()
    for file in files.file:
        pool.Add(file)
    return pool


def test_mlserver_and_seldon_clients_decode_model_metadata(
    channel: grpc.Channel, tmp_path: Path
) -> None:
    raw = _metadata_bytes(channel, "doubler")
    pool = _compile(MLSERVER_METADATA_PROTO, tmp_path)
    message_class: Any = message_factory.GetMessageClass(
        pool.FindMessageTypeByName("mlserver_shape.ModelMetadataResponse")
    )
    theirs = message_class.FromString(raw)  # raised "Exception deserializing" before
    assert theirs.name == "doubler"
    assert [(t.name, t.datatype) for t in theirs.inputs] == [("x", "FP64")]
    signatures = theirs.parameters["signatures"]
    assert signatures.WhichOneof("parameter_choice") == "string_param"
    assert set(signatures.string_param.split(",")) == {"predict", "halve"}
    # Nothing sent that their InferParameter does not know: no unknown fields anywhere.
    assert all(p.WhichOneof("parameter_choice") for p in theirs.parameters.values())


def test_mlserver_own_classes_decode_model_metadata(channel: grpc.Channel) -> None:
    raw = _metadata_bytes(channel, "doubler")
    # MLServer's generated module, in the environment that has mlserver (its pins conflict
    # with ours: tests/e2e/test_mlserver_codecs.py), by its path: importing the mlserver
    # package would start much more. In a subprocess also because it defines inference.* in
    # the default pool, as tritonclient does.
    script = (
        "import importlib.util, pathlib, sys\n"
        "home = pathlib.Path(importlib.util.find_spec('mlserver').submodule_search_locations[0])\n"
        "spec = importlib.util.spec_from_file_location(\n"
        "    'dataplane_pb2', home / 'grpc' / 'dataplane_pb2.py')\n"
        "dataplane_pb2 = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(dataplane_pb2)\n"
        "m = dataplane_pb2.ModelMetadataResponse.FromString(sys.stdin.buffer.read())\n"
        "print(m.name, m.parameters['signatures'].string_param)\n"
    )
    done = subprocess.run(
        [str(mlserver_python()), "-c", script],
        input=raw,
        capture_output=True,
        timeout=120,
        check=True,
    )
    name, signatures = done.stdout.decode().split()
    assert name == "doubler"
    assert set(signatures.split(",")) == {"predict", "halve"}


def test_triton_clients_skip_field_6(server: RunningServer, channel: grpc.Channel) -> None:
    raw = _metadata_bytes(channel, "doubler")
    theirs = triton_pb.ModelMetadataResponse.FromString(raw)
    assert (theirs.name, [t.name for t in theirs.inputs]) == ("doubler", ["x"])
    with triton.InferenceServerClient(server.grpc_address) as client:
        metadata = client.get_model_metadata("doubler", as_json=True)
    assert metadata["name"] == "doubler"
    assert metadata["versions"] == ["1"]


# -- KServe's SDK, in a subprocess -----------------------------------------------------------

KSERVE_SCRIPT = """
import asyncio
import json
import sys

import grpc
import httpx
from kserve.inference_client import InferenceGRPCClient, InferenceRESTClient, RESTConfig
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc as pb_grpc

grpc_address, http_url, model, described = sys.argv[1:5]
out = {}
with grpc.insecure_channel(grpc_address) as channel:
    stub = pb_grpc.GRPCInferenceServiceStub(channel)
    unloaded = stub.RepositoryModelUnload(pb.RepositoryModelUnloadRequest(model_name=model))
    out["unload"] = [unloaded.model_name, unloaded.isUnloaded]
    out["ready_after_unload"] = stub.ModelReady(pb.ModelReadyRequest(name=model)).ready
    loaded = stub.RepositoryModelLoad(pb.RepositoryModelLoadRequest(model_name=model))
    out["load"] = [loaded.model_name, loaded.isLoaded]
    metadata = stub.ModelMetadata(pb.ModelMetadataRequest(name=described))
    out["metadata"] = [metadata.name, [t.name for t in metadata.inputs]]


async def sdk():
    client = InferenceGRPCClient(grpc_address)
    out["grpc_live"] = await client.is_server_live()
    out["grpc_model_ready"] = await client.is_model_ready(model)
    await client.close()
    rest = InferenceRESTClient(RESTConfig(protocol="v1"))
    out["v1_live"] = await rest.is_server_live(http_url)
    try:
        await rest.explain(http_url, model, {"instances": [[1.0]]})
    except httpx.HTTPStatusError as exc:
        out["explain"] = [exc.response.status_code, exc.response.json()["error"]]
    await rest.close()


asyncio.run(sdk())
print(json.dumps(out))
"""


@pytest.mark.skipif(importlib.util.find_spec("kserve") is None, reason="kserve is not installed")
def test_kserve_sdk(server: RunningServer) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            KSERVE_SCRIPT,
            server.grpc_address,
            server.http_url,
            "scratch",
            "doubler",
        ],
        check=False,
        capture_output=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    out = json.loads(done.stdout.decode().strip().splitlines()[-1])
    assert out["unload"] == ["scratch", True]
    assert out["ready_after_unload"] is False
    assert out["load"] == ["scratch", True]
    assert out["metadata"] == ["doubler", ["x"]]
    assert out["grpc_live"] is True
    assert out["grpc_model_ready"] is True
    assert out["v1_live"] is True
    status, message = out["explain"]
    assert status == 501
    assert ":explain is not supported" in message


def test_v1_liveness_and_explain_over_http(server: RunningServer) -> None:
    """What KServe's V1 clients and probes send, without the SDK."""
    live = httpx.get(f"{server.http_url}/", timeout=10)
    assert (live.status_code, live.json()) == (200, {"status": "alive"})
    explain = httpx.post(
        f"{server.http_url}/v1/models/scratch:explain", json={"instances": [[1.0]]}, timeout=10
    )
    assert explain.status_code == 501
    assert "use :predict" in explain.json()["error"]


# -- gRPC conventions: reflection v1, health List --------------------------------------------


def test_reflection_v1_lists_every_service(channel: grpc.Channel) -> None:
    reflection = reflection_v1_grpc.ServerReflectionStub(channel)
    request = reflection_v1.ServerReflectionRequest(list_services="")
    (answer,) = reflection.ServerReflectionInfo(iter([request]), timeout=10)
    assert {s.name for s in answer.list_services_response.service} == {
        "inference.GRPCInferenceService",
        "tensorflow.serving.PredictionService",
        "tensorflow.serving.ModelService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    }


def test_health_list(channel: grpc.Channel) -> None:
    health = health_v1_grpc.HealthStub(channel)
    statuses = health.List(health_v1.HealthListRequest(), timeout=10).statuses
    serving = health_v1.HealthCheckResponse.SERVING
    assert statuses[""].status == serving
    assert statuses["inference.GRPCInferenceService"].status == serving
    assert statuses["doubler"].status == serving
    assert {"identity_fp32", "add_sub", "versioned", "scratch"} <= set(statuses)
