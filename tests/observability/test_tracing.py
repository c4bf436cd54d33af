"""Tracing in-process: the whole server (``app.build`` + ``Server.run``) on free ports with an
InMemorySpanExporter injected; REST and gRPC requests carrying a W3C traceparent produce the
span tree decode / queue / inference / encode under a server span of the client's trace."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from serval.app import build
from serval.config import Settings
from serval.protocols.grpc.generated import grpc_service_pb2 as pb
from serval.protocols.grpc.generated import grpc_service_pb2_grpc as pb_grpc
from serval.testing import free_port
from tests.onnx_models import linear, write_model

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
REST_PARENT = "00f067aa0ba902b7"
GRPC_PARENT = "b7ad6b7169203331"
BODY = {"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [1.0, 2.0]}]}
CHILDREN = ["decode", "queue", "inference", "encode"]


def traceparent(parent: str) -> str:
    return f"00-{TRACE_ID}-{parent}-01"


def grpc_request() -> pb.ModelInferRequest:
    message = pb.ModelInferRequest(model_name="linear", id="grpc-7")
    message.inputs.add(name="x", datatype="FP32", shape=[1, 2])
    message.raw_input_contents.append(np.array([[1.0, 2.0]], np.float32).tobytes())
    return message


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[ReadableSpan], Settings]:
    repository = tmp_path_factory.mktemp("repository")
    write_model(repository, "linear", 1, linear([1.0, 2.0], 0.0))
    exporter = InMemorySpanExporter()
    settings = Settings(
        model_repository=repository,
        http_port=free_port(),
        grpc_port=free_port(),
        tracing=True,
        exit_timeout_s=1.0,
    )
    server = build(settings, span_exporter=exporter)
    asyncio.run(_scenario(server, settings))
    return list(exporter.get_finished_spans()), settings


@pytest.fixture(scope="module")
def spans(traced: tuple[list[ReadableSpan], Settings]) -> list[ReadableSpan]:
    return traced[0]


async def _scenario(server: object, settings: Settings) -> None:
    running = asyncio.create_task(server.run())  # type: ignore[attr-defined]
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{settings.http_port}") as http:
            for _ in range(400):
                try:
                    if (await http.get("/v2/health/ready")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.025)
            headers = {"traceparent": traceparent(REST_PARENT), "x-request-id": "rest-1"}
            ok = await http.post("/v2/models/linear/infer", json=BODY, headers=headers)
            assert ok.status_code == 200, ok.text
            bad = {
                "inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]
            }
            failed = await http.post("/v2/models/linear/infer", json=bad, headers=headers)
            assert failed.status_code == 400
        async with grpc.aio.insecure_channel(f"127.0.0.1:{settings.grpc_port}") as channel:
            call = pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(
                grpc_request(), metadata=(("traceparent", traceparent(GRPC_PARENT)),)
            )
            response = await call
            assert response.id == "grpc-7"
            assert ("x-request-id", "grpc-7") in tuple(await call.initial_metadata())
    finally:
        server.request_stop()  # type: ignore[attr-defined]
        await running


def tree(
    spans: list[ReadableSpan], operation: str
) -> list[tuple[ReadableSpan, list[ReadableSpan]]]:
    roots = [s for s in spans if s.name == operation]
    return [
        (
            root,
            [s for s in spans if s.parent is not None and s.parent.span_id == root.context.span_id],
        )
        for root in roots
    ]


def test_rest_span_tree_continues_the_client_trace(spans: list[ReadableSpan]) -> None:
    (ok, ok_children), (failed, failed_children) = tree(spans, "POST /v2/models/{model}/infer")
    for root in (ok, failed):
        assert root.kind is SpanKind.SERVER
        assert f"{root.context.trace_id:032x}" == TRACE_ID
        assert root.parent is not None and f"{root.parent.span_id:016x}" == REST_PARENT
        assert root.attributes["serval.request_id"] == "rest-1"
        assert root.attributes["serval.model"] == "linear"
    assert [s.name for s in sorted(ok_children, key=lambda s: s.start_time)] == CHILDREN
    assert ok.attributes["serval.outcome"] == "success"
    assert ok.status.status_code is StatusCode.UNSET
    by_name = {s.name: s for s in ok_children}
    assert by_name["inference"].attributes["serval.batch_size"] == 1
    assert ok.start_time <= by_name["decode"].start_time <= by_name["decode"].end_time
    assert by_name["queue"].end_time <= by_name["inference"].start_time
    assert by_name["inference"].end_time <= by_name["encode"].start_time
    assert by_name["encode"].end_time <= ok.end_time
    # Validation refused the second request: decoded, never queued.
    assert [s.name for s in failed_children] == ["decode"]
    # A client's mistake: the conventions leave a server span's status unset below 500.
    assert failed.status.status_code is StatusCode.UNSET
    assert failed.attributes["serval.outcome"] == "client_error"
    assert failed.attributes["http.response.status_code"] == 400
    assert failed.attributes["error.type"] == "InvalidInputError"
    assert "error.type" not in ok.attributes


def test_rest_server_span_has_the_http_conventions(
    traced: tuple[list[ReadableSpan], Settings],
) -> None:
    spans, settings = traced
    ((ok, _), _) = tree(spans, "POST /v2/models/{model}/infer")
    assert {k: v for k, v in ok.attributes.items() if not k.startswith("serval.")} == {
        "http.request.method": "POST",
        "http.route": "/v2/models/{model}/infer",
        "http.response.status_code": 200,
        "url.scheme": "http",
        "server.address": "127.0.0.1",
        "server.port": settings.http_port,
    }


def test_grpc_server_span_has_the_rpc_conventions(
    traced: tuple[list[ReadableSpan], Settings],
) -> None:
    spans, settings = traced
    ((root, _),) = tree(spans, "inference.GRPCInferenceService/ModelInfer")
    assert {k: v for k, v in root.attributes.items() if not k.startswith("serval.")} == {
        "rpc.system": "grpc",
        "rpc.service": "inference.GRPCInferenceService",
        "rpc.method": "ModelInfer",
        "rpc.grpc.status_code": 0,
        "server.address": "127.0.0.1",
        "server.port": settings.grpc_port,
    }


def test_grpc_span_tree_continues_the_client_trace(spans: list[ReadableSpan]) -> None:
    ((root, children),) = tree(spans, "inference.GRPCInferenceService/ModelInfer")
    assert f"{root.context.trace_id:032x}" == TRACE_ID
    assert root.parent is not None and f"{root.parent.span_id:016x}" == GRPC_PARENT
    assert root.attributes["serval.protocol"] == "grpc"
    assert root.attributes["serval.request_id"] == "grpc-7"
    assert sorted(s.name for s in children) == sorted(CHILDREN)


def test_only_inference_requests_make_spans(spans: list[ReadableSpan]) -> None:
    assert len(spans) == 5 + 2 + 5  # REST ok, REST failed (root and decode), gRPC ok


def test_tracing_off_imports_no_opentelemetry(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from serval.app import build\n"
        "from serval.config import Settings\n"
        f"build(Settings(model_repository={str(tmp_path)!r}, grpc_port=0))\n"
        "assert not [m for m in sys.modules if m.startswith('opentelemetry')], 'imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
