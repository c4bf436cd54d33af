"""OpenTelemetry tracing of inference requests: off by default, and free when off.

Nothing here is imported unless tracing is on (``serval serve --tracing``): OpenTelemetry is
the ``observability`` extra. When on, each inference request becomes a span tree, built when
the request finishes from its record (``core.records.RequestRecord``)::

    POST /v2/models/{model}/infer      (or inference.GRPCInferenceService/ModelInfer)
      decode                           read and decode the body
      queue                            wait for an inference thread (or a batch)
      inference                        the model ran (serval.batch_size)
      encode                           encode the response

So no span object exists while the request runs, and the core never sees OpenTelemetry. The
root span continues the trace its request carries (W3C ``traceparent``, or B3, as
``OTEL_PROPAGATORS`` says: REST headers or gRPC metadata) and carries the semantic-convention
attributes of an HTTP or RPC server span (``span_attributes``). Spans go where OpenTelemetry's
environment variables say, serval's settings over them when given (``otel_config``), through
a batch processor; or, for tests, to an injected exporter, synchronously.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from serval.core.records import RequestRecord
from serval.observability import otel_config
from serval.observability.logging import current_request
from serval.observability.requests import outcome_of
from serval.observability.span_attributes import ServerAddress, span_facts

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export import SpanExporter

logger = logging.getLogger(__name__)


class Tracing:
    """Turns request records into spans (subscribe ``on_request`` with ``headers=True``)."""

    def __init__(
        self,
        *,
        service_name: str | None = None,
        otlp_endpoint: str | None = None,
        sample_ratio: float | None = None,
        server: ServerAddress | None = None,
        exporter: SpanExporter | None = None,
    ) -> None:
        """Each setting, when None, is left to OpenTelemetry's environment variables
        (``otel_config``). ``server``: where the server listens (``server.address``).
        ``exporter``: where spans go instead (tests: an InMemorySpanExporter). Raises
        ``TracingConfigError`` for a variable serval cannot follow."""
        # Imported here: only a server with tracing on needs OpenTelemetry at all.
        from opentelemetry import trace  # noqa: PLC0415
        from opentelemetry.sdk.trace import TracerProvider  # noqa: PLC0415
        from opentelemetry.sdk.trace.export import (  # noqa: PLC0415
            BatchSpanProcessor,
            SimpleSpanProcessor,
        )

        self._trace = trace
        self._propagator = otel_config.propagator()
        # Built before the provider: a variable serval cannot follow fails here, having made
        # nothing that would need shutting down.
        exporters = otel_config.span_exporters(otlp_endpoint) if exporter is None else []
        self._provider = TracerProvider(
            resource=otel_config.resource(service_name),
            sampler=otel_config.sampler(sample_ratio),  # None: OTEL_TRACES_SAMPLER decides
        )
        if exporter is not None:
            self._provider.add_span_processor(SimpleSpanProcessor(exporter))
        for each in exporters:  # OTEL_BSP_* tune the batches
            self._provider.add_span_processor(BatchSpanProcessor(each))
        self._tracer = self._provider.get_tracer("serval")
        self._server = server or ServerAddress()
        self._server_kind = trace.SpanKind.SERVER

    def on_request(self, record: RequestRecord) -> None:
        """One record: a span tree for a request an adapter received (an in-process caller's
        request has no operation to name a root span after)."""
        if not record.operation:
            return
        try:
            self._record(record)
        except Exception:  # a tracing problem must never fail a request
            logger.exception("recording the spans of a request failed")

    def _record(self, request: RequestRecord) -> None:
        from opentelemetry.trace import Status, StatusCode  # noqa: PLC0415

        parent = self._propagator.extract(request.headers or {})
        outcome = outcome_of(request.error)
        facts = span_facts(request, self._server)
        attributes: dict[str, Any] = {
            **facts.attributes,
            "serval.protocol": request.protocol,
            "serval.outcome": outcome,
        }
        request_id = request.request_id
        if request_id is None:  # it failed before decoding: the id the logs have
            log_context = current_request()
            request_id = log_context.request_id if log_context is not None else None
        if request_id is not None:
            attributes["serval.request_id"] = request_id
        if request.servable is not None:
            attributes["serval.model"] = request.servable.name
            attributes["serval.model_version"] = str(request.servable.version)
        # perf_counter_ns() timestamps -> time.time_ns(), as OpenTelemetry wants them.
        wall = time.time_ns() - time.perf_counter_ns()
        root = self._tracer.start_span(
            request.operation,
            context=parent,
            kind=self._server_kind,
            attributes=attributes,
            start_time=request.started_ns + wall,
        )
        context = self._trace.set_span_in_context(root)
        end = request.finished_ns
        decoded = request.decoded_ns or end
        self._child("decode", context, wall, request.started_ns, decoded)
        timings = request.timings
        if timings is not None and timings.queued_at_ns:
            ran = timings.queued_at_ns + timings.queue_ns
            compute = timings.compute_input_ns + timings.compute_infer_ns
            compute += timings.compute_output_ns
            self._child("queue", context, wall, timings.queued_at_ns, ran)
            self._child(
                "inference",
                context,
                wall,
                ran,
                ran + compute if compute else request.inferred_ns or end,
                {"serval.batch_size": timings.batch_size},
            )
        if request.inferred_ns and timings is not None:  # the data plane answered
            self._child("encode", context, wall, request.inferred_ns, end)
        if facts.server_error:  # a client's mistake leaves the status unset (the conventions)
            error = request.error
            description = f"{type(error).__name__}: {error}" if error else outcome
            root.set_status(Status(StatusCode.ERROR, description))
        root.end(end_time=end + wall)

    def _child(
        self,
        name: str,
        context: Any,
        wall: int,
        start_ns: int,
        end_ns: int,
        attributes: dict[str, Any] | None = None,
    ) -> None:
        span = self._tracer.start_span(
            name, context=context, attributes=attributes, start_time=start_ns + wall
        )
        span.end(end_time=end_ns + wall)

    def shutdown(self) -> None:
        """Send the spans still buffered; called when the server stops."""
        self._provider.shutdown()
