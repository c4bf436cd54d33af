"""The gRPC adapter in-process: a real grpc.aio server over a DataPlane with fake models,
called through serval's generated stub (typed and raw contents), the health and reflection
services; and the error translation and deadline handling with a fake servicer context."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from serval.core import errors
from serval.core.composition.layers import Composition
from serval.core.control import ControlPlane
from serval.core.dataplane import DataPlane, ServerMetadata
from serval.core.events import EventBus
from serval.core.lifecycle.manager import ControlMode, LifecycleManager, ManagerOptions
from serval.core.lifecycle.source import FileSystemSource
from serval.core.model_spec import ModelSpec
from serval.core.servable import Predictor, Servable, ThreadPoolServable
from serval.core.tensors.datatypes import DataType
from serval.protocols.grpc import GrpcServer
from serval.protocols.grpc.errors import STATUS_FOR_CODE, translate_errors
from serval.protocols.grpc.generated import grpc_health_v1_pb2 as health_v1
from serval.protocols.grpc.generated import grpc_health_v1_pb2_grpc as health_v1_grpc
from serval.protocols.grpc.generated import grpc_reflection_v1_pb2 as reflection_v1
from serval.protocols.grpc.generated import grpc_reflection_v1_pb2_grpc as reflection_v1_grpc
from serval.protocols.grpc.generated import grpc_service_pb2 as pb
from serval.protocols.grpc.generated import grpc_service_pb2_grpc as pb_grpc
from serval.protocols.grpc.generated import model_config_pb2 as config_pb
from serval.protocols.grpc.health import HealthServicer
from serval.protocols.grpc.servicer import InferenceServicer
from serval.testing import EchoPredictor, FakeLoaderFactory, write_version

EXTENSIONS = ("model_repository", "statistics", "model_configuration")


@dataclass
class InProcess:
    port: int
    loaders: FakeLoaderFactory
    dataplane: DataPlane
    loop: asyncio.AbstractEventLoop

    @contextlib.contextmanager
    def channel(self) -> Iterator[grpc.Channel]:
        with grpc.insecure_channel(f"127.0.0.1:{self.port}") as channel:
            yield channel

    def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)


def _build(
    repository: Path, loaders: FakeLoaderFactory, pool: ThreadPoolExecutor, **options: Any
) -> tuple[LifecycleManager, DataPlane, ControlPlane]:
    def base(predictor: Predictor, spec: ModelSpec) -> Servable:
        return ThreadPoolServable(predictor, pool)

    options.setdefault("poll_interval_s", 3600.0)
    options.setdefault("retry_initial_s", 3600.0)
    events = EventBus()
    manager = LifecycleManager(
        FileSystemSource(repository),
        loaders,
        Composition(base),
        pool,
        events,
        ManagerOptions(**options),
    )
    dataplane = DataPlane(manager, events, ServerMetadata("serval", "0.0-test", EXTENSIONS))
    return manager, dataplane, ControlPlane(manager)


@contextlib.contextmanager
def serve(
    repository: Path, loaders: FakeLoaderFactory, *, max_message_bytes: int = 2**20, **options: Any
) -> Iterator[InProcess]:
    """The gRPC server on a free port, its loop in a background thread."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    pool = ThreadPoolExecutor(4)

    def call(coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, loop).result(30)

    async def start() -> tuple[LifecycleManager, DataPlane, GrpcServer]:
        manager, dataplane, control = _build(repository, loaders, pool, **options)
        server = GrpcServer(
            dataplane, control, host="127.0.0.1", port=0, max_message_bytes=max_message_bytes
        )
        await server.start()
        await manager.start()
        return manager, dataplane, server

    manager, dataplane, server = call(start())
    try:
        yield InProcess(server.port, loaders, dataplane, loop)
    finally:
        call(server.stop(0))
        call(manager.stop())
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
        pool.shutdown()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcess]:
    repository = tmp_path_factory.mktemp("repository")
    loaders = FakeLoaderFactory()
    for name in ("echo", "scratch", "broken"):
        write_version(repository, name, 1)
    write_version(repository, "echo", 2)
    (repository / "echo" / "model.yaml").write_text("version_policy: all\nmax_batch_size: 8\n")
    write_version(repository, "words", 1)
    loaders.predictors[("words", 1)] = EchoPredictor(datatype=DataType.BYTES)
    write_version(repository, "slow", 1)
    loaders.predictors[("slow", 1)] = EchoPredictor(delay_s=1.0)
    loaders.predictors[("broken", 1)] = EchoPredictor(fail_with=RuntimeError("boom"))
    with serve(repository, loaders) as running:
        yield running


@pytest.fixture
def stub(server: InProcess) -> Iterator[pb_grpc.GRPCInferenceServiceStub]:
    with server.channel() as channel:
        yield pb_grpc.GRPCInferenceServiceStub(channel)


def fp32_request(values: list[float], model: str = "echo", **fields: Any) -> pb.ModelInferRequest:
    message = pb.ModelInferRequest(model_name=model, **fields)
    message.inputs.add(
        name="x",
        datatype="FP32",
        shape=[len(values)],
        contents=pb.InferTensorContents(fp32_contents=values),
    )
    return message


def status_of(call: Any, *args: Any, **kwargs: Any) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as info:
        call(*args, **kwargs)
    return info.value.code(), info.value.details()


# -- health, metadata, configuration ---------------------------------------------------------


def test_live_ready_and_server_metadata(stub: pb_grpc.GRPCInferenceServiceStub) -> None:
    assert stub.ServerLive(pb.ServerLiveRequest()).live
    assert stub.ServerReady(pb.ServerReadyRequest()).ready
    metadata = stub.ServerMetadata(pb.ServerMetadataRequest())
    assert (metadata.name, metadata.version) == ("serval", "0.0-test")
    assert list(metadata.extensions) == list(EXTENSIONS)


def test_model_ready_and_metadata(stub: pb_grpc.GRPCInferenceServiceStub) -> None:
    assert stub.ModelReady(pb.ModelReadyRequest(name="echo")).ready
    assert stub.ModelReady(pb.ModelReadyRequest(name="echo", version="1")).ready
    assert not stub.ModelReady(pb.ModelReadyRequest(name="echo", version="9")).ready
    metadata = stub.ModelMetadata(pb.ModelMetadataRequest(name="echo"))
    assert metadata.name == "echo"
    assert list(metadata.versions) == ["1", "2"]
    assert metadata.platform == "fake"
    assert [(t.name, t.datatype, list(t.shape)) for t in metadata.inputs] == [("x", "FP32", [-1])]
    assert [(t.name, t.datatype, list(t.shape)) for t in metadata.outputs] == [("y", "FP32", [-1])]


def test_model_config(stub: pb_grpc.GRPCInferenceServiceStub) -> None:
    config = stub.ModelConfig(pb.ModelConfigRequest(name="echo")).config
    assert (config.name, config.platform, config.max_batch_size) == ("echo", "fake", 8)
    assert config.version_policy.WhichOneof("policy_choice") == "all"
    assert config.input[0].name == "x"
    assert config.input[0].data_type == config_pb.TYPE_FP32
    assert list(config.input[0].dims) == []  # the batch dimension is left out when batching
    assert config.WhichOneof("scheduling_choice") == "dynamic_batching"
    assert [(g.kind, g.count) for g in config.instance_group] == [
        (config_pb.ModelInstanceGroup.KIND_CPU, 1)
    ]
    words = stub.ModelConfig(pb.ModelConfigRequest(name="words")).config
    assert words.max_batch_size == 0
    assert words.version_policy.latest.num_versions == 1
    assert (words.output[0].data_type, list(words.output[0].dims)) == (config_pb.TYPE_STRING, [-1])
    assert words.WhichOneof("scheduling_choice") is None
    assert not words.instance_group


# -- inference -------------------------------------------------------------------------------


def test_infer_typed_contents_answers_raw(stub: pb_grpc.GRPCInferenceServiceStub) -> None:
    response = stub.ModelInfer(fp32_request([1.5, -2.0, 3.25], id="abc"))
    assert (response.model_name, response.model_version, response.id) == ("echo", "2", "abc")
    assert [(o.name, o.datatype, list(o.shape)) for o in response.outputs] == [("y", "FP32", [3])]
    assert not response.outputs[0].HasField("contents")
    assert np.frombuffer(response.raw_output_contents[0], "<f4").tolist() == [1.5, -2.0, 3.25]


def test_infer_explicit_version(stub: pb_grpc.GRPCInferenceServiceStub) -> None:
    response = stub.ModelInfer(fp32_request([1.0], model_version="1"))
    assert response.model_version == "1"


def test_infer_raw_bytes(stub: pb_grpc.GRPCInferenceServiceStub) -> None:
    message = pb.ModelInferRequest(model_name="words")
    message.inputs.add(name="x", datatype="BYTES", shape=[2])
    message.raw_input_contents.append(b"\x02\x00\x00\x00hi\x00\x00\x00\x00")
    response = stub.ModelInfer(message)
    assert response.outputs[0].datatype == "BYTES"
    assert response.raw_output_contents[0] == b"\x02\x00\x00\x00hi\x00\x00\x00\x00"


def test_infer_typed_bytes(stub: pb_grpc.GRPCInferenceServiceStub) -> None:
    message = pb.ModelInferRequest(model_name="words")
    message.inputs.add(
        name="x",
        datatype="BYTES",
        shape=[1],
        contents=pb.InferTensorContents(bytes_contents=[b"\x00\xff"]),
    )
    response = stub.ModelInfer(message)
    assert response.raw_output_contents[0] == b"\x02\x00\x00\x00\x00\xff"


INFER_ERRORS = {
    "unknown model": (fp32_request([1.0], model="nope"), grpc.StatusCode.NOT_FOUND, "nope"),
    "unknown version": (
        fp32_request([1.0], model_version="7"),
        grpc.StatusCode.NOT_FOUND,
        "no version 7",
    ),
    "version not a number": (
        fp32_request([1.0], model_version="latest"),
        grpc.StatusCode.INVALID_ARGUMENT,
        "positive integer",
    ),
    "datatype mismatch": (
        pb.ModelInferRequest(
            model_name="echo",
            inputs=[
                pb.ModelInferRequest.InferInputTensor(
                    name="x",
                    datatype="INT32",
                    shape=[1],
                    contents=pb.InferTensorContents(int_contents=[1]),
                )
            ],
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "expected datatype FP32",
    ),
    "unknown input": (
        pb.ModelInferRequest(
            model_name="echo",
            inputs=[
                pb.ModelInferRequest.InferInputTensor(
                    name="z",
                    datatype="FP32",
                    shape=[1],
                    contents=pb.InferTensorContents(fp32_contents=[1]),
                )
            ],
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "unknown input 'z'",
    ),
    "unknown output": (
        fp32_request([1.0], outputs=[pb.ModelInferRequest.InferRequestedOutputTensor(name="nope")]),
        grpc.StatusCode.INVALID_ARGUMENT,
        "unknown output 'nope'",
    ),
    "shape vs data": (
        pb.ModelInferRequest(
            model_name="echo",
            inputs=[pb.ModelInferRequest.InferInputTensor(name="x", datatype="FP32", shape=[3])],
            raw_input_contents=[b"\0" * 8],
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "needs 12 bytes, received 8",
    ),
    "model fails": (
        fp32_request([1.0], model="broken"),
        grpc.StatusCode.INTERNAL,
        "RuntimeError: boom",
    ),
}


@pytest.mark.parametrize("case", INFER_ERRORS, ids=list(INFER_ERRORS))
def test_infer_errors(stub: pb_grpc.GRPCInferenceServiceStub, case: str) -> None:
    message, code, words = INFER_ERRORS[case]
    got_code, details = status_of(stub.ModelInfer, message)
    assert got_code == code
    assert words in details


def test_deadline_exceeded(stub: pb_grpc.GRPCInferenceServiceStub) -> None:
    code, _ = status_of(stub.ModelInfer, fp32_request([1.0], model="slow"), timeout=0.2)
    assert code == grpc.StatusCode.DEADLINE_EXCEEDED


def test_message_larger_than_the_limit_is_resource_exhausted(
    stub: pb_grpc.GRPCInferenceServiceStub,
) -> None:
    message = pb.ModelInferRequest(model_name="echo")
    message.inputs.add(name="x", datatype="FP32", shape=[2**19])
    message.raw_input_contents.append(bytes(2**21))  # 2 MiB against a 1 MiB limit
    code, _ = status_of(stub.ModelInfer, message)
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED


# -- statistics and repository ---------------------------------------------------------------


def test_statistics(stub: pb_grpc.GRPCInferenceServiceStub) -> None:
    before = stub.ModelStatistics(pb.ModelStatisticsRequest(name="echo", version="1"))
    for _ in range(3):
        stub.ModelInfer(fp32_request([1.0, 2.0], model_version="1"))
    after = stub.ModelStatistics(pb.ModelStatisticsRequest(name="echo", version="1"))
    (old,), (new,) = before.model_stats, after.model_stats
    assert (new.name, new.version) == ("echo", "1")
    assert new.execution_count - old.execution_count == 3
    assert new.inference_stats.success.count - old.inference_stats.success.count == 3
    assert new.inference_stats.success.ns > 0
    assert new.last_inference >= time.time() * 1000 - 60_000
    assert [b.batch_size for b in new.batch_stats] == [1]
    everything = stub.ModelStatistics(pb.ModelStatisticsRequest())
    assert {(s.name, s.version) for s in everything.model_stats} >= {("echo", "1"), ("echo", "2")}
    code, _ = status_of(stub.ModelStatistics, pb.ModelStatisticsRequest(name="nope"))
    assert code == grpc.StatusCode.NOT_FOUND


def test_repository_unload_and_load(stub: pb_grpc.GRPCInferenceServiceStub) -> None:
    stub.RepositoryModelUnload(pb.RepositoryModelUnloadRequest(model_name="scratch"))
    assert not stub.ModelReady(pb.ModelReadyRequest(name="scratch")).ready
    index = stub.RepositoryIndex(pb.RepositoryIndexRequest())
    rows = {(m.name, m.version): (m.state, m.reason) for m in index.models}
    assert rows[("scratch", "1")] == ("UNAVAILABLE", "unloaded")
    assert rows[("echo", "2")] == ("READY", "")
    ready_only = stub.RepositoryIndex(pb.RepositoryIndexRequest(ready=True))
    assert "scratch" not in {m.name for m in ready_only.models}

    stub.RepositoryModelLoad(pb.RepositoryModelLoadRequest(model_name="scratch"))
    assert stub.ModelReady(pb.ModelReadyRequest(name="scratch")).ready

    load = pb.RepositoryModelLoadRequest(model_name="scratch")
    load.parameters["config"].string_param = '{"max_batch_size": 4}'
    stub.RepositoryModelLoad(load)
    config = stub.ModelConfig(pb.ModelConfigRequest(name="scratch")).config
    assert config.max_batch_size == 4


def test_repository_answers_kserve_clients(stub: pb_grpc.GRPCInferenceServiceStub) -> None:
    """KServe's grpc_predict_v2.proto puts the model's name in field 1 (Triton's
    repository_name) and reads model_name and isLoaded / isUnloaded from the responses."""
    unloaded = stub.RepositoryModelUnload(
        pb.RepositoryModelUnloadRequest(repository_name="scratch")
    )
    assert (unloaded.model_name, unloaded.isUnloaded) == ("scratch", True)
    assert not stub.ModelReady(pb.ModelReadyRequest(name="scratch")).ready
    loaded = stub.RepositoryModelLoad(pb.RepositoryModelLoadRequest(repository_name="scratch"))
    assert (loaded.model_name, loaded.isLoaded) == ("scratch", True)
    assert stub.ModelReady(pb.ModelReadyRequest(name="scratch")).ready
    # Triton's clients name the model in model_name; repository_name is then ignored.
    both = pb.RepositoryModelLoadRequest(repository_name="models", model_name="scratch")
    assert stub.RepositoryModelLoad(both).model_name == "scratch"
    code, _ = status_of(
        stub.RepositoryModelLoad, pb.RepositoryModelLoadRequest(repository_name="nope")
    )
    assert code == grpc.StatusCode.NOT_FOUND


def _load(name: str, **params: str) -> pb.RepositoryModelLoadRequest:
    request = pb.RepositoryModelLoadRequest(model_name=name)
    for key, value in params.items():
        request.parameters[key].string_param = value
    return request


LOAD_ERRORS = {
    "unknown model": (_load("nope"), grpc.StatusCode.NOT_FOUND, "not in the model repository"),
    "empty name": (_load(""), grpc.StatusCode.INVALID_ARGUMENT, "model_name is empty"),
    "config not JSON": (
        _load("scratch", config="{"),
        grpc.StatusCode.INVALID_ARGUMENT,
        "not valid JSON",
    ),
    "config not an object": (
        _load("scratch", config="[]"),
        grpc.StatusCode.INVALID_ARGUMENT,
        "must be a JSON object",
    ),
    "config with unknown keys": (
        _load("scratch", config='{"bogus_key": 1}'),
        grpc.StatusCode.INVALID_ARGUMENT,
        "bogus_key: unknown key",
    ),
    "file override": (
        _load("scratch", **{"config": "{}", "file:1/model.onnx": "x"}),
        grpc.StatusCode.INVALID_ARGUMENT,  # as REST's 400: the control plane decides
        "file overrides are not supported",
    ),
}


@pytest.mark.parametrize("case", LOAD_ERRORS, ids=list(LOAD_ERRORS))
def test_load_errors(stub: pb_grpc.GRPCInferenceServiceStub, case: str) -> None:
    request, code, words = LOAD_ERRORS[case]
    got_code, details = status_of(stub.RepositoryModelLoad, request)
    assert got_code == code
    assert words in details


def test_unload_unknown_model_is_not_found(stub: pb_grpc.GRPCInferenceServiceStub) -> None:
    code, _ = status_of(
        stub.RepositoryModelUnload, pb.RepositoryModelUnloadRequest(model_name="nope")
    )
    assert code == grpc.StatusCode.NOT_FOUND


def test_metadata_errors(stub: pb_grpc.GRPCInferenceServiceStub) -> None:
    assert status_of(stub.ModelMetadata, pb.ModelMetadataRequest(name="nope"))[0] == (
        grpc.StatusCode.NOT_FOUND
    )
    assert status_of(stub.ModelReady, pb.ModelReadyRequest(name=""))[0] == (
        grpc.StatusCode.INVALID_ARGUMENT
    )
    assert status_of(stub.ModelReady, pb.ModelReadyRequest(name="echo", version="x"))[0] == (
        grpc.StatusCode.INVALID_ARGUMENT
    )
    assert status_of(stub.ModelConfig, pb.ModelConfigRequest(name="nope"))[0] == (
        grpc.StatusCode.NOT_FOUND
    )


# -- health and reflection -------------------------------------------------------------------


def test_health_check(server: InProcess) -> None:
    with server.channel() as channel:
        health = health_pb2_grpc.HealthStub(channel)
        serving = health_pb2.HealthCheckResponse.SERVING
        for service in ("", "inference.GRPCInferenceService", "echo"):
            request = health_pb2.HealthCheckRequest(service=service)
            assert health.Check(request).status == serving, service
        code, _ = status_of(health.Check, health_pb2.HealthCheckRequest(service="nope"))
        assert code == grpc.StatusCode.NOT_FOUND


def test_health_watch(server: InProcess) -> None:
    with server.channel() as channel:
        health = health_pb2_grpc.HealthStub(channel)
        stream = health.Watch(health_pb2.HealthCheckRequest(service="echo"), timeout=5)
        assert next(stream).status == health_pb2.HealthCheckResponse.SERVING
        stream.cancel()
        unknown = health.Watch(health_pb2.HealthCheckRequest(service="nope"), timeout=5)
        assert next(unknown).status == health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
        unknown.cancel()


def test_health_list(server: InProcess) -> None:
    with server.channel() as channel:
        health = health_v1_grpc.HealthStub(channel)
        statuses = health.List(health_v1.HealthListRequest(), timeout=5).statuses
    serving = health_v1.HealthCheckResponse.SERVING
    assert {name: s.status for name, s in statuses.items()} == {
        "": serving,
        "inference.GRPCInferenceService": serving,
        "echo": serving,
        "scratch": serving,
        "words": serving,
        "slow": serving,
        "broken": serving,  # it loads; only its predictions fail
    }


def test_reflection_v1_messages_are_v1alpha_field_for_field() -> None:
    """What lets one servicer answer both versions (serval.protocols.grpc.reflection)."""

    def shape(message: Any) -> list[tuple[str, int, int, str | None]]:
        return sorted(
            (
                field.name,
                field.number,
                field.type,
                field.message_type.name if field.message_type else None,
            )
            for field in message.fields
        )

    v1_messages = reflection_v1.DESCRIPTOR.message_types_by_name
    v1alpha_messages = reflection_pb2.DESCRIPTOR.message_types_by_name
    assert set(v1_messages) == set(v1alpha_messages)
    for name, message in v1_messages.items():
        assert shape(message) == shape(v1alpha_messages[name]), name


def test_reflection_v1_lists_and_describes(server: InProcess) -> None:
    with server.channel() as channel:
        reflection = reflection_v1_grpc.ServerReflectionStub(channel)
        requests = [
            reflection_v1.ServerReflectionRequest(list_services=""),
            reflection_v1.ServerReflectionRequest(file_containing_symbol="grpc.health.v1.Health"),
        ]
        listed, described = reflection.ServerReflectionInfo(iter(requests), timeout=5)
    assert {s.name for s in listed.list_services_response.service} == {
        "inference.GRPCInferenceService",
        "tensorflow.serving.PredictionService",
        "tensorflow.serving.ModelService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
        "grpc.reflection.v1.ServerReflection",
    }
    files = [
        descriptor_pb2.FileDescriptorProto.FromString(raw)
        for raw in described.file_descriptor_response.file_descriptor_proto
    ]
    (health_file,) = [f for f in files if f.package == "grpc.health.v1"]
    (service,) = health_file.service
    assert {m.name for m in service.method} == {"Check", "List", "Watch"}


def test_reflection_describes_every_service(server: InProcess) -> None:
    with server.channel() as channel:
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        (answer,) = reflection.ServerReflectionInfo(iter([request]))
        names = {s.name for s in answer.list_services_response.service}
        assert names == {
            "inference.GRPCInferenceService",
            "tensorflow.serving.PredictionService",
            "tensorflow.serving.ModelService",
            "grpc.health.v1.Health",
            "grpc.reflection.v1alpha.ServerReflection",
            "grpc.reflection.v1.ServerReflection",
        }
        pool = descriptor_pool.DescriptorPool(ProtoReflectionDescriptorDatabase(channel))
        service = pool.FindServiceByName("inference.GRPCInferenceService")
        assert service.methods_by_name["ModelInfer"].input_type.full_name == (
            "inference.ModelInferRequest"
        )
        config = pool.FindMessageTypeByName("inference.ModelConfigResponse")
        assert config.fields_by_name["config"].message_type.full_name == "inference.ModelConfig"
        predict = pool.FindServiceByName("tensorflow.serving.PredictionService")
        request = predict.methods_by_name["Predict"].input_type
        assert request.fields_by_name["inputs"].message_type.fields_by_name[
            "value"
        ].message_type.full_name == ("tensorflow.TensorProto")
        status = pool.FindServiceByName("tensorflow.serving.ModelService")
        assert "GetModelStatus" in status.methods_by_name


# -- a server that is not ready, and one that refuses load/unload ----------------------------


def test_not_ready_server(tmp_path: Path) -> None:
    write_version(tmp_path, "good", 1)
    write_version(tmp_path, "bad", 1)
    loaders = FakeLoaderFactory(failing={("bad", 1): RuntimeError("corrupt file")})
    with serve(tmp_path, loaders) as running, running.channel() as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        assert stub.ServerLive(pb.ServerLiveRequest()).live
        assert not stub.ServerReady(pb.ServerReadyRequest()).ready
        assert not stub.ModelReady(pb.ModelReadyRequest(name="bad")).ready
        with pytest.raises(grpc.RpcError) as info:
            stub.ModelInfer(fp32_request([1.0], model="bad"))
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "corrupt file" in info.value.details()
        assert ("retry-after", "1") in info.value.trailing_metadata()
        assert stub.ModelInfer(fp32_request([1.0], model="good")).model_name == "good"

        health = health_pb2_grpc.HealthStub(channel)
        statuses = {
            s: health.Check(health_pb2.HealthCheckRequest(service=s)).status
            for s in ("", "good", "bad")
        }
        assert statuses == {
            "": health_pb2.HealthCheckResponse.NOT_SERVING,
            "good": health_pb2.HealthCheckResponse.SERVING,
            "bad": health_pb2.HealthCheckResponse.NOT_SERVING,
        }
        listed = health_v1_grpc.HealthStub(channel).List(health_v1.HealthListRequest())
        assert {name: s.status for name, s in listed.statuses.items()} == {
            **statuses,
            "inference.GRPCInferenceService": health_pb2.HealthCheckResponse.NOT_SERVING,
        }


def test_control_mode_none_refuses_load(tmp_path: Path) -> None:
    write_version(tmp_path, "m", 1)
    with (
        serve(tmp_path, FakeLoaderFactory(), control_mode=ControlMode.NONE) as running,
        running.channel() as channel,
    ):
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        code, details = status_of(stub.RepositoryModelLoad, _load("m"))
        assert code == grpc.StatusCode.FAILED_PRECONDITION
        assert "model control mode 'none'" in details


def test_health_after_graceful_shutdown(server: InProcess) -> None:
    async def check() -> list[int]:
        health = HealthServicer(server.dataplane, watch_interval_s=60)
        before = health.status("echo")
        health.enter_graceful_shutdown()
        watch = [
            m.status
            async for m in health.Watch(
                health_pb2.HealthCheckRequest(service="echo"), FakeContext()
            )
        ]
        return [before, health.status(""), health.status("echo"), *watch]

    assert (
        server.run(check())
        == [health_pb2.HealthCheckResponse.SERVING]
        + [health_pb2.HealthCheckResponse.NOT_SERVING] * 3
    )


def test_health_while_draining(tmp_path: Path) -> None:
    write_version(tmp_path, "m", 1)
    # A server of its own: draining is for good.
    with serve(tmp_path, FakeLoaderFactory()) as running:

        async def check() -> list[int | None]:
            health = HealthServicer(running.dataplane, watch_interval_s=60)
            before = [health.status(""), health.status("m")]
            running.dataplane.begin_draining()
            return [*before, health.status(""), health.status("m"), health.status("nope")]

        statuses = running.run(check())
    serving, not_serving = (
        health_pb2.HealthCheckResponse.SERVING,
        health_pb2.HealthCheckResponse.NOT_SERVING,
    )
    # The server and every model say NOT_SERVING; an unknown name stays unknown.
    assert statuses == [serving, serving, not_serving, not_serving, None]


# -- error translation and deadlines, with a fake context ------------------------------------


class AbortedError(Exception):
    pass


class FakeContext:
    def __init__(self, remaining: float | None = None) -> None:
        self.remaining = remaining
        self.code: grpc.StatusCode | None = None
        self.details = ""
        self.trailing: tuple[tuple[str, str], ...] = ()

    def time_remaining(self) -> float | None:
        return self.remaining

    def set_trailing_metadata(self, metadata: tuple[tuple[str, str], ...]) -> None:
        self.trailing = metadata

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return ()

    async def send_initial_metadata(self, metadata: tuple[tuple[str, str], ...]) -> None:
        pass

    async def abort(self, code: grpc.StatusCode, details: str) -> None:
        self.code, self.details = code, details
        raise AbortedError


ERROR_CLASSES = [
    errors.InvalidInputError,
    errors.ModelNotFoundError,
    errors.ModelNotReadyError,
    errors.ServerNotReadyError,
    errors.PayloadTooLargeError,
    errors.OverloadedError,
    errors.DeadlineExceededError,
    errors.OperationNotAllowedError,
    errors.UnsupportedError,
    errors.ModelConfigError,
    errors.ModelLoadError,
    errors.ModelExecutionError,
]
EXPECTED_STATUS = {
    errors.ErrorCode.INVALID_ARGUMENT: grpc.StatusCode.INVALID_ARGUMENT,
    errors.ErrorCode.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    errors.ErrorCode.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    errors.ErrorCode.RESOURCE_EXHAUSTED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.ErrorCode.DEADLINE_EXCEEDED: grpc.StatusCode.DEADLINE_EXCEEDED,
    errors.ErrorCode.PAYLOAD_TOO_LARGE: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.ErrorCode.FAILED_PRECONDITION: grpc.StatusCode.FAILED_PRECONDITION,
    errors.ErrorCode.UNIMPLEMENTED: grpc.StatusCode.UNIMPLEMENTED,
    errors.ErrorCode.INTERNAL: grpc.StatusCode.INTERNAL,
    errors.ErrorCode.UNAUTHENTICATED: grpc.StatusCode.UNAUTHENTICATED,
    errors.ErrorCode.PERMISSION_DENIED: grpc.StatusCode.PERMISSION_DENIED,
}


def test_every_error_code_has_its_status() -> None:
    assert STATUS_FOR_CODE == EXPECTED_STATUS
    assert set(STATUS_FOR_CODE) == set(errors.ErrorCode)


class Raising:
    def __init__(self, error: Exception) -> None:
        self.error = error

    @translate_errors
    async def Call(self, request: object, context: Any) -> None:
        raise self.error


@pytest.mark.parametrize("cls", ERROR_CLASSES, ids=[c.__name__ for c in ERROR_CLASSES])
def test_errors_become_their_status(cls: type[errors.ServalError]) -> None:
    context = FakeContext()
    with pytest.raises(AbortedError):
        asyncio.run(Raising(cls("what and why")).Call(None, context))
    assert context.code == EXPECTED_STATUS[cls.code]
    assert context.details == "what and why"


def test_unexpected_exception_is_internal_and_named() -> None:
    context = FakeContext()
    with pytest.raises(AbortedError):
        asyncio.run(Raising(KeyError("k")).Call(None, context))
    assert context.code == grpc.StatusCode.INTERNAL
    assert context.details == "internal error in Call: KeyError: 'k'"


def test_retry_after_becomes_trailing_metadata() -> None:
    context = FakeContext()
    with pytest.raises(AbortedError):
        asyncio.run(Raising(errors.OverloadedError("busy", retry_after_s=2.5)).Call(None, context))
    assert context.trailing == (("retry-after", "3"),)


def _slow_servicer(
    tmp_path: Path, delay_s: float
) -> tuple[InferenceServicer, EchoPredictor, LifecycleManager]:
    write_version(tmp_path, "slow", 1)
    predictor = EchoPredictor(delay_s=delay_s)
    loaders = FakeLoaderFactory(predictors={("slow", 1): predictor})
    manager, dataplane, control = _build(tmp_path, loaders, ThreadPoolExecutor(2))
    return InferenceServicer(dataplane, control), predictor, manager


def test_request_past_its_deadline_is_not_run(tmp_path: Path) -> None:
    async def scenario() -> tuple[FakeContext, int]:
        servicer, predictor, manager = _slow_servicer(tmp_path, 0.0)
        await manager.start()
        context = FakeContext(remaining=0.0)
        with pytest.raises(AbortedError):
            await servicer.ModelInfer(fp32_request([1.0], model="slow"), context)
        await manager.stop()
        return context, predictor.calls

    context, calls = asyncio.run(scenario())
    assert context.code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert "deadline passed before it could run" in context.details
    assert calls == 0


def test_server_stops_waiting_at_the_deadline(tmp_path: Path) -> None:
    async def scenario() -> tuple[FakeContext, float]:
        servicer, _, manager = _slow_servicer(tmp_path, 1.0)
        await manager.start()
        context = FakeContext(remaining=0.1)
        started = time.perf_counter()
        with pytest.raises(AbortedError):
            await servicer.ModelInfer(fp32_request([1.0], model="slow"), context)
        elapsed = time.perf_counter() - started
        await manager.stop()
        return context, elapsed

    context, elapsed = asyncio.run(scenario())
    assert context.code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert "did not answer within the request's deadline" in context.details
    assert elapsed < 0.9
