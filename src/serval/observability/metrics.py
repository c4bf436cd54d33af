"""Prometheus metrics, on a ``CollectorRegistry`` the composition root creates and injects.

``ServalMetrics`` is three things at once:

- a subscriber of the core's events (``on_state_changed``, ``on_prediction``): model states,
  load times, queue and compute times, batch sizes, monitored inputs and outputs;
- a ``RequestRecorder`` of the adapters' observed requests: requests by outcome and protocol,
  end-to-end, decode and encode times, requests in progress;
- a collector: at scrape time it turns its accumulators into metric families, and reads the
  gauges of the moment (requests in flight per version, the inference queue's depth).

Names and meanings are in ``docs/metrics.md``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.metrics_core import Metric

from serval.core.events import PredictionEvent, StateChanged
from serval.core.states import ServableId
from serval.observability.instruments import (
    BATCH_SIZE_BUCKETS,
    LATENCY_BUCKETS,
    CounterVec,
    GaugeVec,
    HistogramVec,
    Labels,
    gauge_family,
)
from serval.observability.model_metrics import ModelMetrics
from serval.observability.requests import SUCCESS, ObservedRequest, outcome_of

_REQUEST = ("model", "version", "protocol")
_MODEL = ("model", "version")
_NS = 1e-9


class ServalMetrics:
    wants_trace_context = False

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        inflight: Callable[[], Mapping[ServableId, int]] = dict,
        queue_depth: Callable[[], int] | None = None,
        process: bool = True,
    ) -> None:
        self._inflight = inflight
        self._queue_depth = queue_depth
        self.models = ModelMetrics()
        self.requests = CounterVec(
            "serval_requests_total",
            "Inference requests by outcome: success, client_error, unknown_model, unavailable, "
            "overloaded, timeout, cancelled, server_error.",
            (*_REQUEST, "outcome"),
        )
        self.duration = HistogramVec(
            "serval_request_duration_seconds",
            "Successful inference requests, from the adapter receiving them to the response "
            "encoded.",
            _REQUEST,
            LATENCY_BUCKETS,
        )
        self.decode = HistogramVec(
            "serval_request_decode_seconds",
            "Reading and decoding successful requests' bodies into tensors.",
            _REQUEST,
            LATENCY_BUCKETS,
        )
        self.encode = HistogramVec(
            "serval_request_encode_seconds",
            "Encoding successful responses.",
            _REQUEST,
            LATENCY_BUCKETS,
        )
        self.in_progress = GaugeVec(
            "serval_requests_in_progress",
            "Inference requests an adapter is handling now.",
            ("protocol",),
        )
        self.queue = HistogramVec(
            "serval_inference_queue_seconds",
            "Time requests waited for an inference thread (or a batch).",
            _MODEL,
            LATENCY_BUCKETS,
        )
        self.compute = HistogramVec(
            "serval_inference_compute_seconds",
            "Time the model took: input preparation, inference and output preparation.",
            _MODEL,
            LATENCY_BUCKETS,
        )
        self.batch_size = HistogramVec(
            "serval_inference_batch_size",
            "Size of the batches the model ran on (1 without batching).",
            _MODEL,
            BATCH_SIZE_BUCKETS,
        )
        registry.register(self)
        if process:
            ProcessCollector(registry=registry)
            PlatformCollector(registry=registry)
            GCCollector(registry=registry)

    # -- core events ------------------------------------------------------------------------

    def on_state_changed(self, event: StateChanged) -> None:
        self.models.on_state_changed(event)

    def on_prediction(self, event: PredictionEvent) -> None:
        labels = self.models.labels(event.id)
        response = event.response
        if response is not None:
            timings = response.timings
            self.queue.observe(labels, timings.queue_ns * _NS)
            compute = timings.compute_input_ns + timings.compute_infer_ns
            self.compute.observe(labels, (compute + timings.compute_output_ns) * _NS)
            self.batch_size.observe(labels, timings.batch_size)
        self.models.observe_tensors(event)
        if event.request.context is None:  # no adapter observed it (an in-process caller)
            self.requests.inc((*labels, "", outcome_of(event.error)))

    # -- observed requests (RequestRecorder) ------------------------------------------------

    def request_started(self, request: ObservedRequest) -> None:
        self.in_progress.inc((request.protocol,))

    def request_finished(self, request: ObservedRequest) -> None:
        protocol = request.protocol
        self.in_progress.inc((protocol,), -1.0)
        servable = request.servable
        if servable is not None:
            labels: Labels = (*self.models.labels(servable), protocol)
        elif request.model in self.models.models:
            labels = (request.model, "", protocol)  # a model the repository has, unresolved
        else:
            labels = ("", "", protocol)  # a name only the client knows: never a label value
        self.requests.inc((*labels, request.outcome))
        if request.outcome != SUCCESS:
            return
        self.duration.observe(labels, (request.finished_ns - request.started_ns) * _NS)
        if request.decoded_ns:
            self.decode.observe(labels, (request.decoded_ns - request.started_ns) * _NS)
        if request.inferred_ns:
            self.encode.observe(labels, (request.finished_ns - request.inferred_ns) * _NS)

    # -- exposition -------------------------------------------------------------------------

    def collect(self) -> Iterator[Metric]:
        yield self.requests.family()
        yield self.duration.family()
        yield self.decode.family()
        yield self.encode.family()
        yield self.in_progress.family()
        yield self.queue.family()
        yield self.compute.family()
        yield self.batch_size.family()
        yield gauge_family(
            "serval_inflight_requests",
            "Requests inside the data plane per version (waiting for or running the model).",
            _MODEL,
            ((self.models.labels(s), float(n)) for s, n in self._inflight().items()),
        )
        if self._queue_depth is not None:
            yield gauge_family(
                "serval_queue_depth",
                "Requests waiting for a thread of the inference pool (all models).",
                (),
                [((), float(self._queue_depth()))],
            )
        yield from self.models.collect()


def exposition(registry: CollectorRegistry) -> tuple[bytes, str]:
    """The registry in Prometheus text format, and its content type."""
    return generate_latest(registry), CONTENT_TYPE_LATEST
