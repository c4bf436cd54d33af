"""The OpenTelemetry pieces of a tracing server: resource, sampler, propagator, exporters.

OpenTelemetry is configured by its own environment variables (what the OpenTelemetry
Operator injects, what every SDK reads), so serval follows them, and its own settings
(``--service-name``, ``--otlp-endpoint``, ``--trace-sample-ratio``, or their ``SERVAL_``
variables or config-file keys) win over them only when they are given: unset, they leave the
choice to OpenTelemetry's variables, then to the defaults below.

===================================  =================================================
``OTEL_SERVICE_NAME``,               ``service.name`` (else ``serval``)
``OTEL_RESOURCE_ATTRIBUTES``         and the other resource attributes
``OTEL_TRACES_EXPORTER``             ``otlp`` (default), ``console``, ``none``; a list
``OTEL_EXPORTER_OTLP[_TRACES]_*``    endpoint, protocol (``grpc``, default, or
                                     ``http/protobuf``), headers, TLS, timeout
``OTEL_TRACES_SAMPLER[_ARG]``        the sampler (default ``parentbased_always_on``)
``OTEL_PROPAGATORS``                 ``tracecontext,baggage`` (default), ``b3``,
                                     ``b3multi``, ``none``, or any installed propagator
``OTEL_BSP_*``, ``OTEL_SDK_DISABLED``  batching of exports; everything off
===================================  =================================================

The SDK reads most of them itself (the exporters their endpoint, headers and TLS; the
tracer provider its sampler; the resource its attributes): this module reads only what the
SDK leaves to the program that builds the pieces (which exporter, which OTLP protocol,
which propagators), and reads them the way the SDK's own auto-configuration does. It is the
one place besides ``serval.config`` that reads the environment, because these variables are
OpenTelemetry's, not serval's. OpenTelemetry is imported only when tracing is on.
"""

from __future__ import annotations

import os
from importlib.metadata import entry_points
from typing import TYPE_CHECKING
from urllib.parse import urlparse

if TYPE_CHECKING:
    from opentelemetry.propagators.textmap import TextMapPropagator
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.sdk.trace.sampling import Sampler

DEFAULT_SERVICE_NAME = "serval"
GRPC = "grpc"
HTTP_PROTOBUF = "http/protobuf"
_TRACES_PATH = "/v1/traces"  # what OTLP/HTTP appends to a collector's base address


class TracingConfigError(ValueError):
    """An OpenTelemetry variable (or serval setting) asks for what serval cannot do."""


def resource(service_name: str | None) -> Resource:
    """The resource of serval's spans: ``service_name`` when given, else the environment's
    (``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``), else ``serval``."""
    from opentelemetry.sdk.resources import (  # noqa: PLC0415
        SERVICE_NAME,
        OTELResourceDetector,
        Resource,
    )

    if service_name is None:
        # Only the environment's attributes: Resource.create() would answer unknown_service.
        from_environment = OTELResourceDetector().detect().attributes.get(SERVICE_NAME)
        service_name = str(from_environment) if from_environment else DEFAULT_SERVICE_NAME
    # create() merges OTEL_RESOURCE_ATTRIBUTES under the attributes given here.
    return Resource.create({SERVICE_NAME: service_name})


def sampler(sample_ratio: float | None) -> Sampler | None:
    """A parent-based ratio sampler when ``sample_ratio`` is given; None lets the tracer
    provider read ``OTEL_TRACES_SAMPLER`` and ``OTEL_TRACES_SAMPLER_ARG`` itself."""
    if sample_ratio is None:
        return None
    from opentelemetry.sdk.trace.sampling import (  # noqa: PLC0415
        ParentBased,
        TraceIdRatioBased,
    )

    return ParentBased(TraceIdRatioBased(sample_ratio))


def propagator() -> TextMapPropagator:
    """The propagators ``OTEL_PROPAGATORS`` names (default ``tracecontext,baggage``), loaded
    from the ``opentelemetry_propagator`` entry points as ``opentelemetry.propagate`` does,
    but built for this server rather than set process-wide."""
    from opentelemetry.propagators.composite import CompositePropagator  # noqa: PLC0415

    names = [name.strip() for name in _env("OTEL_PROPAGATORS", "tracecontext,baggage").split(",")]
    if "none" in (name.lower() for name in names):
        return CompositePropagator([])
    propagators = []
    for name in filter(None, names):
        found = list(entry_points(group="opentelemetry_propagator", name=name))
        if not found:
            hint = " (pip install opentelemetry-propagator-b3)" if name.startswith("b3") else ""
            raise TracingConfigError(
                f"OTEL_PROPAGATORS names {name!r}, which is not installed{hint}"
            )
        propagators.append(found[0].load()())
    return CompositePropagator(propagators)


def span_exporters(otlp_endpoint: str | None) -> list[SpanExporter]:
    """The exporters ``OTEL_TRACES_EXPORTER`` names (default ``otlp``; ``none``: none).
    ``otlp_endpoint``, when given, is where OTLP goes; else the exporter reads
    ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_ENDPOINT`` itself."""
    names = [name.strip().lower() for name in _env("OTEL_TRACES_EXPORTER", "otlp").split(",")]
    if "none" in names:
        return []
    exporters: list[SpanExporter] = []
    for name in filter(None, names):
        if name == "otlp":
            exporters.append(_otlp_exporter(otlp_endpoint))
        elif name == "console":
            from opentelemetry.sdk.trace.export import ConsoleSpanExporter  # noqa: PLC0415

            exporters.append(ConsoleSpanExporter())
        else:
            raise TracingConfigError(
                f"OTEL_TRACES_EXPORTER names {name!r}; serval exports traces with otlp or "
                "console (or none)"
            )
    return exporters


def otlp_protocol() -> str:
    """``OTEL_EXPORTER_OTLP_TRACES_PROTOCOL``, else ``OTEL_EXPORTER_OTLP_PROTOCOL``, else
    ``grpc`` (the Python SDK's default, and serval's before it read the variable)."""
    protocol = _env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or _env("OTEL_EXPORTER_OTLP_PROTOCOL")
    protocol = protocol.strip().lower() or GRPC
    if protocol not in (GRPC, HTTP_PROTOBUF):
        raise TracingConfigError(
            f"OTEL_EXPORTER_OTLP_PROTOCOL is {protocol!r}; serval sends OTLP traces over "
            f"{GRPC} or {HTTP_PROTOBUF}"
        )
    return protocol


def http_traces_url(endpoint: str) -> str:
    """A collector's base address (``http://collector:4318``) becomes its traces URL, as
    ``OTEL_EXPORTER_OTLP_ENDPOINT`` does; a URL with a path is used as it is, as
    ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` is."""
    if urlparse(endpoint).path.strip("/"):
        return endpoint
    return endpoint.rstrip("/") + _TRACES_PATH


def _otlp_exporter(endpoint: str | None) -> SpanExporter:
    protocol = otlp_protocol()
    try:
        if protocol == HTTP_PROTOBUF:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # noqa: PLC0415
                OTLPSpanExporter as HttpExporter,
            )

            return HttpExporter(endpoint=http_traces_url(endpoint) if endpoint else None)
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (  # noqa: PLC0415
            OTLPSpanExporter as GrpcExporter,
        )
    except ImportError as exc:
        raise TracingConfigError(
            f"tracing over OTLP/{protocol} needs {exc.name}: "
            "pip install 'serval-server[observability]'"
        ) from exc
    # http:// is plaintext and https:// TLS; the exporter reads the scheme itself.
    return GrpcExporter(endpoint=endpoint)


def _env(name: str, default: str = "") -> str:
    return os.environ.get(name) or default
