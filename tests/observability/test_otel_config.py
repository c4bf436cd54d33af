"""OpenTelemetry's environment variables configure tracing, and serval's settings, when given,
win over them: resource, sampler, propagators, exporters and the OTLP protocol."""

from __future__ import annotations

import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
    OTLPSpanExporter as GrpcExporter,
)
from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
    OTLPSpanExporter as HttpExporter,
)
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.sdk.resources import SERVICE_NAME
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased
from opentelemetry.trace import get_current_span

from serval.observability import otel_config
from serval.observability.otel_config import TracingConfigError

OTEL_VARIABLES = (
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_TRACES_EXPORTER",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
    "OTEL_PROPAGATORS",
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test sees only the OTEL_ variables it sets."""
    for name in OTEL_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def test_service_name_default_environment_and_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert otel_config.resource(None).attributes[SERVICE_NAME] == "serval"
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "service.name=from-attrs,team=fraud")
    assert otel_config.resource(None).attributes[SERVICE_NAME] == "from-attrs"
    monkeypatch.setenv("OTEL_SERVICE_NAME", "fraud-detector")
    found = otel_config.resource(None).attributes
    assert (found[SERVICE_NAME], found["team"]) == ("fraud-detector", "fraud")
    # --service-name (or SERVAL_SERVICE_NAME) given: it wins.
    assert otel_config.resource("from-flag").attributes[SERVICE_NAME] == "from-flag"


def test_sampler_from_the_environment_unless_a_ratio_is_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")
    assert otel_config.sampler(None) is None  # the provider reads the variable itself
    assert TracerProvider(sampler=otel_config.sampler(None)).sampler is ALWAYS_OFF
    given = otel_config.sampler(0.25)
    assert isinstance(given, ParentBased)
    assert "TraceIdRatioBased{0.25}" in given.get_description()


def test_propagators_named_by_otel_propagators(monkeypatch: pytest.MonkeyPatch) -> None:
    carrier = {"b3": "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1"}
    monkeypatch.setenv("OTEL_PROPAGATORS", "tracecontext, b3multi ,b3")
    propagator = otel_config.propagator()
    assert isinstance(propagator, CompositePropagator)
    assert {"traceparent", "b3", "x-b3-traceid"} <= propagator.fields
    parent = get_current_span(propagator.extract(carrier)).get_span_context()
    assert f"{parent.trace_id:032x}" == "80f198ee56343ba864fe8b2a57d3eff7"
    assert f"{parent.span_id:016x}" == "e457b5a2e4d86bd1"
    monkeypatch.setenv("OTEL_PROPAGATORS", "none")
    assert otel_config.propagator().fields == set()
    monkeypatch.delenv("OTEL_PROPAGATORS")
    assert otel_config.propagator().fields == {"traceparent", "tracestate", "baggage"}


def test_an_unknown_propagator_stops_the_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_PROPAGATORS", "tracecontext,xray")
    with pytest.raises(TracingConfigError, match="'xray', which is not installed"):
        otel_config.propagator()


def test_exporters_named_by_otel_traces_exporter(monkeypatch: pytest.MonkeyPatch) -> None:
    (default,) = otel_config.span_exporters(None)
    assert isinstance(default, GrpcExporter)
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console,otlp")
    console, otlp = otel_config.span_exporters(None)
    assert isinstance(console, ConsoleSpanExporter)
    assert isinstance(otlp, GrpcExporter)
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    assert otel_config.span_exporters(None) == []
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "zipkin")
    with pytest.raises(TracingConfigError, match="'zipkin'; serval exports traces with otlp"):
        otel_config.span_exporters(None)


def test_grpc_endpoint_from_the_environment_unless_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector.monitoring:4317")
    (exporter,) = otel_config.span_exporters(None)
    assert exporter._endpoint == "collector.monitoring:4317"  # type: ignore[attr-defined]
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://traces.monitoring:4317")
    (exporter,) = otel_config.span_exporters(None)
    assert exporter._endpoint == "traces.monitoring:4317"  # type: ignore[attr-defined]
    (exporter,) = otel_config.span_exporters("http://from-flag:4317")
    assert exporter._endpoint == "from-flag:4317"  # type: ignore[attr-defined]


def test_http_protobuf_endpoints(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")
    (exporter,) = otel_config.span_exporters(None)
    assert isinstance(exporter, HttpExporter)
    assert exporter._endpoint == "http://collector:4318/v1/traces"
    # The traces-only variables win over the general ones.
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc")
    assert otel_config.otlp_protocol() == "grpc"
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf")
    (given,) = otel_config.span_exporters("http://from-flag:4318/")
    assert given._endpoint == "http://from-flag:4318/v1/traces"  # type: ignore[attr-defined]
    (full,) = otel_config.span_exporters("http://from-flag:4318/custom/traces")
    assert full._endpoint == "http://from-flag:4318/custom/traces"  # type: ignore[attr-defined]


def test_an_unsupported_protocol_stops_the_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
    with pytest.raises(TracingConfigError, match="'http/json'; serval sends OTLP traces over"):
        otel_config.span_exporters(None)
