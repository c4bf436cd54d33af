"""The real server traces by OpenTelemetry's conventions: started with the variables an
OpenTelemetry Operator injects (OTEL_EXPORTER_OTLP_*, OTEL_SERVICE_NAME, OTEL_PROPAGATORS,
OTEL_TRACES_SAMPLER, OTEL_TRACES_EXPORTER), it sends its spans to an in-test OTLP receiver
(gRPC and http/protobuf) or to the console, continues B3 traces, samples as told, and its
server spans carry the semantic-convention attributes on REST and gRPC. serval's own flags,
when given, win over the variables."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest

from serval.protocols.grpc.generated import grpc_service_pb2 as pb
from serval.protocols.grpc.generated import grpc_service_pb2_grpc as pb_grpc
from serval.testing import run_server
from tests.e2e.otlp_receiver import ReceivedSpan, grpc_receiver, http_receiver
from tests.onnx_models import linear, write_model

pytestmark = pytest.mark.e2e

BODY = {"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [1.0, 2.0]}]}
REST_ROUTE = "/v2/models/{model}/infer"
REST_SPAN = "POST " + REST_ROUTE
GRPC_SPAN = "inference.GRPCInferenceService/ModelInfer"
B3_TRACE, B3_SPAN = "80f198ee56343ba864fe8b2a57d3eff7", "e457b5a2e4d86bd1"
GRPC_TRACE, GRPC_PARENT = "463ac35c9f6413ad48485a3953bb6124", "0020000000000001"
W3C_TRACE, W3C_PARENT = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
# Spans leave in batches: every 50 ms rather than OpenTelemetry's 5 s, to keep the tests short.
QUICK_BATCHES = {"OTEL_BSP_SCHEDULE_DELAY": "50"}


@pytest.fixture(scope="module", autouse=True)
def no_otel_variables() -> Iterator[None]:
    """The servers see only the OTEL_ variables a test sets, not the machine's."""
    with pytest.MonkeyPatch.context() as patch:
        for name in [name for name in os.environ if name.startswith("OTEL_")]:
            patch.delenv(name)
        yield


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("repository")
    write_model(root, "linear", 1, linear([1.0, 2.0], 0.0))
    return root


def grpc_infer(model: str) -> pb.ModelInferRequest:
    message = pb.ModelInferRequest(model_name=model)
    message.inputs.add(name="x", datatype="FP32", shape=[1, 2])
    message.raw_input_contents.append(np.array([[1.0, 2.0]], np.float32).tobytes())
    return message


def conventions(span: ReceivedSpan) -> dict[str, object]:
    """The span's attributes less serval's own."""
    return {k: v for k, v in span.attributes.items() if not k.startswith("serval.")}


class TestOperatorEnvironmentOverOtlpGrpc:
    """OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_SERVICE_NAME and OTEL_PROPAGATORS=tracecontext,b3."""

    @pytest.fixture(scope="class")
    def received(self, repository: Path) -> Iterator[tuple[list[ReceivedSpan], int, int]]:
        with grpc_receiver() as (receiver, port):
            env = {
                **QUICK_BATCHES,
                "SERVAL_TRACING": "true",
                "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
                "OTEL_SERVICE_NAME": "fraud-detector",
                "OTEL_PROPAGATORS": "tracecontext,b3",
            }
            with run_server(repository, env=env) as server:
                with httpx.Client(base_url=server.http_url) as http:
                    b3 = {"b3": f"{B3_TRACE}-{B3_SPAN}-1"}
                    assert http.post("/v2/models/linear/infer", json=BODY, headers=b3).is_success
                    missing = http.post("/v2/models/ghost/infer", json=BODY)
                    assert missing.status_code == 404
                with grpc.insecure_channel(server.grpc_address) as channel:
                    stub = pb_grpc.GRPCInferenceServiceStub(channel)
                    metadata = (  # B3 in its several headers (the REST request: one)
                        ("x-b3-traceid", GRPC_TRACE),
                        ("x-b3-spanid", GRPC_PARENT),
                        ("x-b3-sampled", "1"),
                    )
                    stub.ModelInfer(grpc_infer("linear"), metadata=metadata)
                    with pytest.raises(grpc.RpcError) as failed:
                        stub.ModelInfer(grpc_infer("ghost"))
                    assert failed.value.code() is grpc.StatusCode.NOT_FOUND
                spans = receiver.wait_for(
                    lambda spans: len([s for s in spans if s.name in (REST_SPAN, GRPC_SPAN)]) == 4,
                    "the server spans of four requests",
                )
                yield spans, server.http_port, server.grpc_port

    def test_service_name_is_the_environment(
        self, received: tuple[list[ReceivedSpan], int, int]
    ) -> None:
        spans, _, _ = received
        assert {s.service_name for s in spans} == {"fraud-detector"}

    def test_rest_span_continues_the_b3_trace_with_http_conventions(
        self, received: tuple[list[ReceivedSpan], int, int]
    ) -> None:
        spans, http_port, _ = received
        ok, missing = sorted(
            (s for s in spans if s.name == REST_SPAN),
            key=lambda s: s.attributes["http.response.status_code"],
        )
        assert (ok.trace_id, ok.parent_span_id) == (B3_TRACE, B3_SPAN)
        assert conventions(ok) == {
            "http.request.method": "POST",
            "http.route": REST_ROUTE,
            "http.response.status_code": 200,
            "url.scheme": "http",
            "server.address": "127.0.0.1",
            "server.port": http_port,
        }
        children = {s.name for s in spans if s.span.parent_span_id == ok.span.span_id}
        assert children == {"decode", "queue", "inference", "encode"}
        assert missing.attributes["http.response.status_code"] == 404
        assert missing.attributes["error.type"] == "ModelNotFoundError"
        assert missing.span.status.code == missing.span.status.STATUS_CODE_UNSET
        assert missing.trace_id != B3_TRACE  # no trace context: a trace of its own

    def test_grpc_span_continues_the_b3_trace_with_rpc_conventions(
        self, received: tuple[list[ReceivedSpan], int, int]
    ) -> None:
        spans, _, grpc_port = received
        ok, missing = sorted(
            (s for s in spans if s.name == GRPC_SPAN),
            key=lambda s: s.attributes["rpc.grpc.status_code"],
        )
        assert (ok.trace_id, ok.parent_span_id) == (GRPC_TRACE, GRPC_PARENT)
        assert conventions(ok) == {
            "rpc.system": "grpc",
            "rpc.service": "inference.GRPCInferenceService",
            "rpc.method": "ModelInfer",
            "rpc.grpc.status_code": 0,
            "server.address": "127.0.0.1",
            "server.port": grpc_port,
        }
        assert missing.attributes["rpc.grpc.status_code"] == grpc.StatusCode.NOT_FOUND.value[0]


def test_http_protobuf_sampler_and_flags_over_the_environment(repository: Path) -> None:
    """OTLP over http/protobuf, OTEL_TRACES_SAMPLER=parentbased_always_off (only a sampled
    parent's requests are traced), and --service-name / --otlp-endpoint winning over
    OTEL_SERVICE_NAME / OTEL_EXPORTER_OTLP_TRACES_ENDPOINT."""
    with http_receiver() as (receiver, port):
        env = {
            **QUICK_BATCHES,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:9/v1/traces",  # discard
            "OTEL_SERVICE_NAME": "from-environment",
            "OTEL_TRACES_SAMPLER": "parentbased_always_off",
        }
        flags = ("--tracing", "--service-name", "from-flag")
        flags += ("--otlp-endpoint", f"http://127.0.0.1:{port}")
        with run_server(repository, *flags, env=env) as server, httpx.Client() as http:
            url = f"{server.http_url}/v2/models/linear/infer"
            unsampled = http.post(url, json=BODY)  # a root: always off
            sampled = {"traceparent": f"00-{W3C_TRACE}-{W3C_PARENT}-01"}
            assert unsampled.is_success and http.post(url, json=BODY, headers=sampled).is_success
            receiver.wait_for(
                lambda spans: any(s.name == REST_SPAN for s in spans), "the sampled request"
            )
        # Stopped: whatever was still batched has been sent.
        spans = receiver.spans()
        assert {s.trace_id for s in spans} == {W3C_TRACE}
        ((root,),) = [[s for s in spans if s.name == REST_SPAN]]
        assert root.parent_span_id == W3C_PARENT
        assert root.service_name == "from-flag"
        assert len(spans) == 5  # the root and decode, queue, inference, encode


def test_console_exporter(repository: Path) -> None:
    env = {
        **QUICK_BATCHES,
        "SERVAL_TRACING": "true",
        "OTEL_TRACES_EXPORTER": "console",
        "OTEL_SERVICE_NAME": "console-traces",
    }
    with run_server(repository, env=env) as server:
        assert httpx.post(f"{server.http_url}/v2/models/linear/infer", json=BODY).is_success
        deadline = time.monotonic() + 20
        while f'"name": "{REST_SPAN}"' not in server.log():  # the server's stdout
            assert time.monotonic() < deadline, "no span on the console within 20 s"
            time.sleep(0.05)
        log = server.log()
    assert '"service.name": "console-traces"' in log
    assert '"http.route": "/v2/models/{model}/infer"' in log


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("OTEL_TRACES_EXPORTER", "zipkin", "OTEL_TRACES_EXPORTER names 'zipkin'"),
        ("OTEL_PROPAGATORS", "xray", "OTEL_PROPAGATORS names 'xray', which is not installed"),
    ],
)
def test_a_variable_serval_cannot_follow_stops_the_start(
    repository: Path, variable: str, value: str, message: str
) -> None:
    command = [sys.executable, "-m", "serval", "serve", str(repository), "--tracing"]
    command += ["--http-port", "0", "--grpc-port", "0"]
    done = subprocess.run(
        command,
        env={**os.environ, variable: value},
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert message in done.stderr
