"""An in-test OTLP trace receiver, as an OpenTelemetry Collector would be: the collector's
``TraceService/Export`` over gRPC (opentelemetry-proto's service) and ``POST /v1/traces``
with a protobuf body over HTTP, both on free loopback ports."""

from __future__ import annotations

import gzip
import threading
from collections.abc import Callable, Iterator
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as trace_service
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc as trace_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

SERVER_KIND = Span.SpanKind.SPAN_KIND_SERVER


@dataclass(frozen=True)
class ReceivedSpan:
    """A span as the collector got it, with its resource's attributes."""

    service_name: str
    resource: dict[str, Any]
    span: Span

    @property
    def name(self) -> str:
        return self.span.name

    @property
    def trace_id(self) -> str:
        return self.span.trace_id.hex()

    @property
    def parent_span_id(self) -> str:
        return self.span.parent_span_id.hex()

    @property
    def attributes(self) -> dict[str, Any]:
        return attributes_of(self.span.attributes)


def attributes_of(pairs: Any) -> dict[str, Any]:
    return {pair.key: _value(pair.value) for pair in pairs}


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind is not None else None


class OtlpReceiver:
    """Keeps every span exported to it; ``wait_for`` blocks until a condition holds."""

    def __init__(self) -> None:
        self._spans: list[ReceivedSpan] = []
        self._changed = threading.Condition()
        self.requests = 0

    def receive(self, request: trace_service.ExportTraceServiceRequest) -> None:
        received = []
        for resource_spans in request.resource_spans:
            resource = attributes_of(resource_spans.resource.attributes)
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    received.append(ReceivedSpan(str(resource.get("service.name")), resource, span))
        with self._changed:
            self.requests += 1
            self._spans.extend(received)
            self._changed.notify_all()

    def spans(self) -> list[ReceivedSpan]:
        with self._changed:
            return list(self._spans)

    def server_spans(self) -> list[ReceivedSpan]:
        return [s for s in self.spans() if s.span.kind == SERVER_KIND]

    def wait_for(
        self, condition: Callable[[list[ReceivedSpan]], bool], what: str, timeout_s: float = 20.0
    ) -> list[ReceivedSpan]:
        with self._changed:
            if not self._changed.wait_for(lambda: condition(self._spans), timeout_s):
                raise AssertionError(f"{what}: not received within {timeout_s:g} s")
            return list(self._spans)


class _TraceService(trace_grpc.TraceServiceServicer):
    def __init__(self, receiver: OtlpReceiver) -> None:
        self._receiver = receiver

    def Export(
        self, request: trace_service.ExportTraceServiceRequest, context: grpc.ServicerContext
    ) -> trace_service.ExportTraceServiceResponse:
        self._receiver.receive(request)
        return trace_service.ExportTraceServiceResponse()


@contextmanager
def grpc_receiver() -> Iterator[tuple[OtlpReceiver, int]]:
    """An OTLP/gRPC receiver and its port."""
    receiver = OtlpReceiver()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_grpc.add_TraceServiceServicer_to_server(_TraceService(receiver), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield receiver, port
    finally:
        server.stop(grace=None)


@contextmanager
def http_receiver() -> Iterator[tuple[OtlpReceiver, int]]:
    """An OTLP/HTTP (protobuf) receiver at ``/v1/traces`` and its port."""
    receiver = OtlpReceiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            if self.path != "/v1/traces" or self.headers.get_content_type() != (
                "application/x-protobuf"
            ):
                self.send_error(404, f"not an OTLP traces export: {self.path}")
                return
            receiver.receive(trace_service.ExportTraceServiceRequest.FromString(body))
            reply = trace_service.ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # quiet: pytest shows what the test asserts

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver, server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
