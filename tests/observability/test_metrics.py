"""ServalMetrics from core events and observed requests, without a server: exact counts,
histogram counts, label values only from the repository, and the exposition."""

from __future__ import annotations

import time

import numpy as np
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from serval.core.errors import InvalidInputError, ModelExecutionError, ModelNotFoundError
from serval.core.events import EventBus, PredictionEvent, StateChanged
from serval.core.lifecycle.handles import Workload
from serval.core.lifecycle.states import ServableId, ServableState
from serval.core.model_spec import ModelSpec
from serval.core.records import RequestRecord
from serval.core.types import InferenceRequest, InferenceResponse, InferenceTimings, Tensor
from serval.observability.metrics import ServalMetrics, exposition

M1 = ServableId("m", 1)


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    body, content_type = exposition(registry)
    assert content_type.startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }


def value(found: dict, name: str, **labels: str) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


class Rig:
    """A bus, the metrics, and a version ``m:1`` that monitors x and y."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.bus = EventBus()
        self.metrics = ServalMetrics(
            self.registry,
            workload=lambda: {M1: Workload(inflight=3, waiting=2)},
            pool_queue_depth=lambda: 7,
            process=False,
        )
        self.bus.on_state_changed(self.metrics.on_state_changed)
        self.bus.on_prediction(self.metrics.on_prediction)
        self.bus.on_request(self.metrics.on_request)
        spec = ModelSpec.parse(
            {
                "inputs": [{"name": "x", "range": [0, 10], "monitor": True}],
                "outputs": [{"name": "y", "classes": True}],
            },
            source="test",
        )
        self.bus.emit(StateChanged(M1, ServableState.LOADING, spec=spec))
        self.bus.emit(StateChanged(M1, ServableState.AVAILABLE, duration_s=0.25, spec=spec))

    def request(
        self,
        model: str,
        *,
        x: list[float] | None = None,
        error: Exception | None = None,
        resolved: bool = True,
        protocol: str = "rest_v2",
        servable: ServableId = M1,
    ) -> None:
        """One request's record, as an adapter and the data plane fill it in (the data plane
        names the version once it chose one), emitted once."""
        record = RequestRecord(protocol, "op", model, time.perf_counter_ns())
        request = InferenceRequest(model, [Tensor.from_numpy("x", np.array(x or [1.0]))])
        request.record = record
        if resolved:
            record.decoded_ns = time.perf_counter_ns()
            response = None
            if error is None:
                timings = InferenceTimings(queue_ns=2_000_000, compute_infer_ns=1_000_000)
                y = Tensor.from_numpy("y", np.array([1, 2]))
                response = InferenceResponse(model, [y], model_version="1", timings=timings)
                record.timings = timings
            record.servable = servable
            record.inferred_ns = time.perf_counter_ns()
            wanted = self.bus.wanted_by(request)
            if wanted is not None:
                self.bus.emit_prediction(PredictionEvent(M1, request, response, error, 5), wanted)
        record.finished_ns = time.perf_counter_ns()
        record.error = error
        self.bus.emit_request(record)


def test_requests_by_outcome_and_histograms() -> None:
    rig = Rig()
    for _ in range(5):
        rig.request("m")
    rig.request("m", protocol="grpc")
    rig.request("m", error=InvalidInputError("bad"))
    rig.request("m", error=ModelExecutionError("boom"))
    rig.request("m", error=InvalidInputError("bad json"), resolved=False)  # before resolving
    for name in ("nope", "secret-name", "m2"):
        rig.request(name, error=ModelNotFoundError("unknown"), resolved=False)
    found = samples(rig.registry)
    total = "serval_requests_total"
    assert value(found, total, model="m", version="1", protocol="rest_v2", outcome="success") == 5
    assert value(found, total, model="m", version="1", protocol="grpc", outcome="success") == 1
    assert (
        value(found, total, model="m", version="1", protocol="rest_v2", outcome="client_error") == 1
    )
    assert (
        value(found, total, model="m", version="1", protocol="rest_v2", outcome="server_error") == 1
    )
    assert (
        value(found, total, model="m", version="", protocol="rest_v2", outcome="client_error") == 1
    )
    assert (
        value(found, total, model="", version="", protocol="rest_v2", outcome="unknown_model") == 3
    )
    labels = {dict(key[1]).get("model") for key in found}
    assert labels <= {None, "", "m"}  # client-chosen names never become label values
    duration = "serval_request_duration_seconds_count"
    assert value(found, duration, model="m", version="1", protocol="rest_v2") == 5
    assert (
        value(found, "serval_request_decode_seconds_count", model="m", version="1", protocol="grpc")
        == 1
    )
    assert value(found, "serval_inference_queue_seconds_count", model="m", version="1") == 6
    assert value(found, "serval_inference_queue_seconds_sum", model="m", version="1") == (
        pytest.approx(0.012)
    )
    assert (
        value(found, "serval_inference_queue_seconds_bucket", model="m", version="1", le="0.0025")
        == 6
    )
    assert value(found, "serval_inference_batch_size_bucket", model="m", version="1", le="1.0") == 6


def test_journal_flushes_between_scrapes() -> None:
    rig = Rig()
    for _ in range(2500):  # more than two journal flushes
        rig.request("m")
    found = samples(rig.registry)
    assert (
        value(
            found,
            "serval_requests_total",
            model="m",
            version="1",
            protocol="rest_v2",
            outcome="success",
        )
        == 2500
    )
    assert (
        value(
            found, "serval_request_encode_seconds_count", model="m", version="1", protocol="rest_v2"
        )
        == 2500
    )
    rig.request("m")
    assert (
        value(
            samples(rig.registry),
            "serval_request_duration_seconds_count",
            model="m",
            version="1",
            protocol="rest_v2",
        )
        == 2501
    )


def test_journal_of_a_split_model_counts_each_version_and_protocol() -> None:
    # A traffic policy interleaves a model's versions in the journal: every request is counted
    # under its own version and protocol, across flushes; equal ids held by distinct objects
    # are one series.
    rig = Rig()
    m2, m2_again = ServableId("m", 2), ServableId("m", 2)
    expected: dict[tuple[str, str], int] = {}
    for i in range(3000):
        servable = (M1, m2, m2_again)[i % 3 if i % 7 else 0]
        protocol = "grpc" if i % 5 == 0 else "rest_v2"
        rig.request("m", servable=servable, protocol=protocol)
        labels = (str(servable.version), protocol)
        expected[labels] = expected.get(labels, 0) + 1
    found = samples(rig.registry)
    for (version, protocol), count in expected.items():
        assert (
            value(
                found,
                "serval_requests_total",
                model="m",
                version=version,
                protocol=protocol,
                outcome="success",
            )
            == count
        )
        assert (
            value(
                found,
                "serval_request_duration_seconds_count",
                model="m",
                version=version,
                protocol=protocol,
            )
            == count
        )
    for version in ("1", "2"):
        queued = sum(n for (v, _), n in expected.items() if v == version)
        assert value(found, "serval_inference_queue_seconds_count", model="m", version=version) == (
            queued
        )


def test_model_states_load_gauges_and_workload() -> None:
    rig = Rig()
    rig.bus.emit(StateChanged(ServableId("m", 2), ServableState.LOADING))
    rig.bus.emit(StateChanged(ServableId("m", 2), ServableState.END, error="corrupt"))
    found = samples(rig.registry)
    state = "serval_model_state"
    assert value(found, state, model="m", version="1", state="AVAILABLE") == 1
    assert value(found, state, model="m", version="1", state="LOADING") == 0
    assert value(found, state, model="m", version="2", state="END") == 1
    assert value(found, "serval_model_load_duration_seconds", model="m", version="1") == 0.25
    assert value(found, "serval_model_load_failures_total", model="m", version="2") == 1
    assert value(found, "serval_inflight_requests", model="m", version="1") == 3
    assert value(found, "serval_queue_depth", model="m", version="1") == 2
    assert value(found, "serval_inference_pool_queue_depth") == 7


def test_monitored_inputs_and_outputs() -> None:
    rig = Rig()
    rig.request("m", x=[1.0, float("nan"), 12.0, -3.0])
    rig.request("m", x=[5.0], error=InvalidInputError("refused"))  # validation refused it
    found = samples(rig.registry)
    key = {"model": "m", "version": "1", "input": "x"}
    assert value(found, "serval_input_values_total", **key) == 3
    assert value(found, "serval_input_missing_total", **key) == 1
    assert value(found, "serval_input_out_of_range_total", side="below", **key) == 1
    assert value(found, "serval_input_out_of_range_total", side="above", **key) == 1
    assert value(found, "serval_input_value_min", **key) == -3.0
    assert value(found, "serval_input_value_max", **key) == 12.0
    assert value(found, "serval_input_value_mean", **key) == 10.0 / 3
    out = {"model": "m", "version": "1", "output": "y"}
    assert value(found, "serval_output_class_total", **out, **{"class": "1"}) == 1
    assert value(found, "serval_output_class_total", **out, **{"class": "2"}) == 1


def test_in_process_callers_count_with_an_empty_protocol() -> None:
    rig = Rig()
    record = RequestRecord("", "", "m", 1_000)  # as the data plane begins one
    record.decoded_ns, record.inferred_ns, record.finished_ns = 1_000, 5_000, 5_000
    record.servable, record.timings = M1, InferenceTimings(compute_infer_ns=4_000)
    rig.bus.emit_request(record)
    found = samples(rig.registry)
    assert (
        value(
            found, "serval_requests_total", model="m", version="1", protocol="", outcome="success"
        )
        == 1
    )
    assert value(found, "serval_inference_compute_seconds_count", model="m", version="1") == 1


def test_process_collectors_on_the_injected_registry() -> None:
    registry = CollectorRegistry()
    ServalMetrics(registry)
    names = {
        family.name for family in text_string_to_metric_families(exposition(registry)[0].decode())
    }
    assert "python_info" in names
    assert "serval_requests" in names
