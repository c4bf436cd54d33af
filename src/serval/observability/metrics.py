"""Prometheus metrics, on a ``CollectorRegistry`` the composition root creates and injects.

A little over 300 lines: the subscriber and the collector share their accumulators, so they
stay one class (the families themselves live in ``instruments`` and ``model_metrics``).

``ServalMetrics`` is three things at once:

- a subscriber of the core's events: ``on_state_changed`` (model states, load times),
  ``on_request`` (one record per request: requests by outcome and protocol, end-to-end, decode
  and encode times, queue and compute times, batch sizes; shadow copies apart, in
  ``shadow_metrics``) and ``on_prediction`` (monitored inputs and outputs, only while a model
  monitors them);
- a collector: at scrape time it turns its accumulators into metric families, and reads the
  gauges of the moment (requests in flight and queued per version, the inference pool's
  queue).

The hot path appends the finished request to a journal; the journal is folded into the series
every 1024 requests and at each scrape. Names and meanings are in ``docs/metrics.md``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np
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
from serval.core.lifecycle.handles import Workload
from serval.core.lifecycle.states import ServableId
from serval.core.records import RequestRecord
from serval.core.types import InferenceRequest, InferenceTimings
from serval.observability.instruments import (
    BATCH_SIZE_BUCKETS,
    LATENCY_BUCKETS,
    Histogram,
    Labels,
    counter_family,
    gauge_family,
    histogram_family,
)
from serval.observability.model_metrics import ModelMetrics
from serval.observability.requests import SUCCESS, outcome_of
from serval.observability.shadow_metrics import FeedbackMetrics, ShadowMetrics, ShadowReport

_REQUEST = ("model", "version", "protocol")
_MODEL = ("model", "version")
_NS = 1e-9
_FLUSH_EVERY = 1024
# started, decoded, inferred, finished (ns), queue, compute (ns), batch size, executions
_NUMBERS = 8
_PRIMARY = "primary"  # RequestRecord.role of the requests clients made


def _timing_values(timings: InferenceTimings) -> tuple[int, int, int, int]:
    """Queue time, compute time, batch size and executions. Of the requests that shared a
    batch, one counts the execution (1) and the others 0, so batch sizes count per batch."""
    compute = timings.compute_input_ns + timings.compute_infer_ns + timings.compute_output_ns
    return timings.queue_ns, compute, timings.batch_size, timings.executions


def _group(
    versions: list[ServableId], protocols: list[str], numbers: np.ndarray[Any, Any]
) -> dict[tuple[ServableId, str], np.ndarray[Any, Any]]:
    """The journal's rows by version and protocol; usually one group, found without hashing.

    Several groups (a traffic policy splits a model's requests between versions) are told
    apart by object identity in numpy, not per row in Python: a ``ServableId``'s hash and
    equality are Python functions (a dataclass's), and a row's costs would be paid once per
    request. The rows of a version are one object (the servable's id); equal keys held by
    distinct objects are merged after."""
    version, protocol = versions[0], protocols[0]
    # List equality tests identity first, in C, and stops at the first row that differs
    # (list.count would compare every other version's row with a dataclass's __eq__).
    size = len(versions)
    one_version = versions == [version] * size
    one_protocol = protocols == [protocol] * size
    if one_version and one_protocol:
        return {(version, protocol): numbers}
    version_rows, version_codes = _first_rows_and_codes(versions, one_version)
    protocol_rows, protocol_codes = _first_rows_and_codes(protocols, one_protocol)
    kinds = len(protocol_rows)
    codes = version_codes * kinds + protocol_codes
    groups: dict[tuple[ServableId, str], np.ndarray[Any, Any]] = {}
    for code in np.flatnonzero(np.bincount(codes)).tolist():
        rows = numbers[codes == code]
        key = (versions[version_rows[code // kinds]], protocols[protocol_rows[code % kinds]])
        seen = groups.get(key)
        groups[key] = rows if seen is None else np.concatenate((seen, rows))
    return groups


def _first_rows_and_codes(objects: list[Any], one: bool) -> tuple[list[int], np.ndarray[Any, Any]]:
    """For the distinct objects of ``objects`` (by identity; ``one``: all are equal): the
    row each first appears in, and each row's object as a code 0..n-1 into those rows."""
    if one:
        return [0], np.zeros(len(objects), np.intp)
    identities = list(map(id, objects))
    distinct = sorted(set(identities))  # a few: the versions (or protocols) of one flush
    codes = np.searchsorted(np.array(distinct, np.uint64), np.array(identities, np.uint64))
    return [identities.index(identity) for identity in distinct], codes


class _RequestSeries:
    """The series of one (model, version, protocol)."""

    __slots__ = ("decode", "duration", "encode", "outcomes")

    def __init__(self) -> None:
        self.outcomes: dict[str, int] = {}
        self.duration = Histogram(LATENCY_BUCKETS)
        self.decode = Histogram(LATENCY_BUCKETS)
        self.encode = Histogram(LATENCY_BUCKETS)


class _ModelSeries:
    """The series of one model version."""

    __slots__ = ("batch_size", "compute", "labels", "queue")

    def __init__(self, labels: Labels) -> None:
        self.labels = labels
        self.queue = Histogram(LATENCY_BUCKETS)
        self.compute = Histogram(LATENCY_BUCKETS)
        self.batch_size = Histogram(BATCH_SIZE_BUCKETS)


class ServalMetrics:
    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        workload: Callable[[], Mapping[ServableId, Workload]] = dict,
        pool_queue_depth: Callable[[], int] | None = None,
        shadow_report: ShadowReport | None = None,
        process: bool = True,
    ) -> None:
        """``workload``: the requests on each version now (the data plane's); ``pool_queue_depth``:
        jobs waiting for a thread of the shared inference pool; ``shadow_report``: every
        model's shadow statistics now. Subscribe ``feedback.on_feedback`` to count feedback."""
        self._workload = workload
        self._pool_queue_depth = pool_queue_depth
        self.models = ModelMetrics()
        self.shadows = ShadowMetrics(shadow_report)
        self.feedback = FeedbackMetrics()
        self._requests: dict[Labels, _RequestSeries] = {}  # by model, version, protocol
        self._versions: dict[Labels, _ModelSeries] = {}  # by model, version
        # The journal: per successful request, its (model, version), protocol and _NUMBERS
        # numbers, appended while they are at hand (in cache) and folded into the series with
        # numpy every _FLUSH_EVERY requests and at each scrape. Python run once per request,
        # among the rest of a request's code, costs several times what it costs in a loop.
        self._journal_versions: list[ServableId] = []
        self._journal_protocols: list[str] = []
        self._journal_numbers: list[int] = []
        registry.register(self)
        if process:
            ProcessCollector(registry=registry)
            PlatformCollector(registry=registry)
            GCCollector(registry=registry)

    # -- core events ------------------------------------------------------------------------

    def on_state_changed(self, event: StateChanged) -> None:
        self.models.on_state_changed(event)

    def wants_prediction(self, request: InferenceRequest) -> bool:
        """The events ``on_prediction`` needs: every prediction while a model monitors its
        tensors, else none."""
        return self.models.monitoring

    def on_prediction(self, event: PredictionEvent) -> None:
        if self.models.monitoring:
            self.models.observe_tensors(event)

    # -- request records --------------------------------------------------------------------

    def on_request(self, record: RequestRecord) -> None:
        timings = record.timings
        servable = record.servable
        if (
            record.error is not None or timings is None or servable is None
        ) or record.role != _PRIMARY:  # rare: a failure, or a shadow copy
            self._fold(record)
            return
        self._journal_versions.append(servable)
        self._journal_protocols.append(record.protocol)
        self._journal_numbers += (
            record.started_ns,
            record.decoded_ns,
            record.inferred_ns,
            record.finished_ns,
            timings.queue_ns,
            timings.compute_input_ns + timings.compute_infer_ns + timings.compute_output_ns,
            timings.batch_size,
            timings.executions,
        )
        if len(self._journal_versions) >= _FLUSH_EVERY:
            self._flush()

    # -- aggregation ------------------------------------------------------------------------

    def _flush(self) -> None:
        """Fold the journal into the series, vectorised: every _FLUSH_EVERY requests and at
        each scrape."""
        versions, protocols = self._journal_versions, self._journal_protocols
        if not versions:
            return
        numbers = np.array(self._journal_numbers, dtype=np.int64).reshape(-1, _NUMBERS)
        self._journal_versions, self._journal_protocols, self._journal_numbers = [], [], []
        for (servable, protocol), rows in _group(versions, protocols, numbers).items():
            version = self.models.labels(servable)
            series = self._series((*version, protocol))
            series.outcomes[SUCCESS] = series.outcomes.get(SUCCESS, 0) + len(rows)
            started, decoded, inferred, ended, queue, compute, batch, executions = rows.T
            series.duration.observe_many((ended - started) * _NS)
            series.decode.observe_many(((decoded - started) * _NS)[decoded != 0])
            series.encode.observe_many(((ended - inferred) * _NS)[inferred != 0])
            model = self._version_series(version)
            model.queue.observe_many(queue * _NS)
            model.compute.observe_many(compute * _NS)
            model.batch_size.observe_many(batch[executions != 0].astype(np.float64))

    def _fold(self, record: RequestRecord) -> None:
        if record.role != _PRIMARY:
            self.shadows.on_shadow(record)
            return
        servable = record.servable
        version: Labels | None = None
        if servable is not None:
            version = self.models.labels(servable)
            labels: Labels = (*version, record.protocol)
        elif record.model in self.models.models:  # a model the repository has, unresolved
            labels = (record.model, "", record.protocol)
        else:  # a name only the client knows: never a label value
            labels = ("", "", record.protocol)
        series = self._series(labels)
        outcome = outcome_of(record.error)
        series.outcomes[outcome] = series.outcomes.get(outcome, 0) + 1
        if version is not None and record.timings is not None:
            self._fold_timings(version, record.timings)
        if outcome != SUCCESS:
            return
        started, ended = record.started_ns, record.finished_ns
        series.duration.observe((ended - started) * _NS)
        if record.decoded_ns:
            series.decode.observe((record.decoded_ns - started) * _NS)
        if record.inferred_ns:
            series.encode.observe((ended - record.inferred_ns) * _NS)

    def _fold_timings(self, version: Labels, timings: InferenceTimings) -> None:
        model = self._version_series(version)
        queue, compute, batch_size, executions = _timing_values(timings)
        model.queue.observe(queue * _NS)
        model.compute.observe(compute * _NS)
        if executions:
            model.batch_size.observe(batch_size)

    def _version_series(self, version: Labels) -> _ModelSeries:
        model = self._versions.get(version)
        if model is None:
            model = self._versions[version] = _ModelSeries(version)
        return model

    def _series(self, labels: Labels) -> _RequestSeries:
        series = self._requests.get(labels)
        if series is None:
            series = self._requests[labels] = _RequestSeries()
        return series

    # -- exposition -------------------------------------------------------------------------

    def collect(self) -> Iterator[Metric]:
        self._flush()
        requests = list(self._requests.items())
        yield counter_family(
            "serval_requests_total",
            "Inference requests by outcome: success, client_error, unknown_model, unavailable, "
            "overloaded, timeout, cancelled, server_error.",
            (*_REQUEST, "outcome"),
            (
                ((*labels, outcome), float(count))
                for labels, series in requests
                for outcome, count in series.outcomes.items()
            ),
        )
        for attribute, name, documentation in (
            (
                "duration",
                "serval_request_duration_seconds",
                "Successful inference requests, from the adapter receiving them to the "
                "response encoded.",
            ),
            (
                "decode",
                "serval_request_decode_seconds",
                "Reading and decoding successful requests' bodies into tensors.",
            ),
            ("encode", "serval_request_encode_seconds", "Encoding successful responses."),
        ):
            yield histogram_family(
                name,
                documentation,
                _REQUEST,
                ((labels, getattr(s, attribute)) for labels, s in requests if s.duration.count),
            )
        versions = [(s.labels, s) for s in self._versions.values() if s.queue.count]
        yield histogram_family(
            "serval_inference_queue_seconds",
            "Time requests waited for an inference thread (or a batch).",
            _MODEL,
            ((labels, s.queue) for labels, s in versions),
        )
        yield histogram_family(
            "serval_inference_compute_seconds",
            "Time the model took: input preparation, inference and output preparation.",
            _MODEL,
            ((labels, s.compute) for labels, s in versions),
        )
        yield histogram_family(
            "serval_inference_batch_size",
            "Size of the batches the model ran (rows; one observation per model execution).",
            _MODEL,
            ((labels, s.batch_size) for labels, s in versions),
        )
        workload = [(self.models.labels(v), w) for v, w in self._workload().items()]
        yield gauge_family(
            "serval_inflight_requests",
            "Requests inside the data plane per version (waiting for or running the model).",
            _MODEL,
            ((labels, float(w.inflight)) for labels, w in workload),
        )
        yield gauge_family(
            "serval_queue_depth",
            "Requests waiting in the version's own queue (models with dynamic batching or "
            "instances).",
            _MODEL,
            ((labels, float(w.waiting)) for labels, w in workload),
        )
        if self._pool_queue_depth is not None:
            yield gauge_family(
                "serval_inference_pool_queue_depth",
                "Requests waiting for a thread of the shared inference pool (models without a "
                "queue of their own).",
                (),
                [((), float(self._pool_queue_depth()))],
            )
        yield from self.models.collect()
        yield from self.shadows.collect()
        yield from self.feedback.collect()


def exposition(registry: CollectorRegistry) -> tuple[bytes, str]:
    """The registry in Prometheus text format, and its content type."""
    return generate_latest(registry), CONTENT_TYPE_LATEST
