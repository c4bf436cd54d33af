"""Composition root: builds the whole server from settings. The only place that wires parts."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry

from serval import __version__
from serval.config import Settings
from serval.core.batching.servable import BatchingOptions, BatchingServable
from serval.core.control import ControlPlane
from serval.core.dataplane import DataPlane, ServerMetadata
from serval.core.events import EventBus, StateChanged
from serval.core.lifecycle.manager import LifecycleManager, ManagerOptions
from serval.core.lifecycle.source import FileSystemSource
from serval.core.lifecycle.states import ServableState
from serval.core.model_spec import ModelSpec
from serval.core.servable import Predictor, Servable, ThreadPoolServable
from serval.observability.metrics import ServalMetrics, exposition
from serval.protocols.rest.app import build_rest_app
from serval.protocols.rest.v2 import EXTENSIONS
from serval.protocols.rest.worker_header import WorkerHeaderMiddleware
from serval.runtimes.registry import RuntimeRegistry
from serval.server import GrpcService, Server

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export import SpanExporter

logger = logging.getLogger("serval.models")


def build(settings: Settings, *, span_exporter: SpanExporter | None = None) -> Server:
    """``span_exporter`` replaces the OTLP exporter when tracing is on (tests)."""
    events = EventBus()
    events.on_state_changed(log_state_change)
    threads = settings.inference_threads or os.cpu_count() or 1
    inference_pool = ThreadPoolExecutor(threads, thread_name_prefix="serval-infer")
    load_pool = ThreadPoolExecutor(4, thread_name_prefix="serval-load")

    def wrap(predictor: Predictor, spec: ModelSpec) -> Servable:
        # A model with a queue (it batches, or sets instances or dynamic_batching) runs on
        # threads of its own, one per instance, so a batch never waits behind other models'
        # work; the others share the inference pool (docs/batching.md#threads).
        if spec.scheduled:
            return BatchingServable(predictor, BatchingOptions.from_spec(spec))
        return ThreadPoolServable(predictor, inference_pool)

    manager = LifecycleManager(
        FileSystemSource(settings.model_repository),
        RuntimeRegistry.default(),
        wrap,
        load_pool,
        events,
        ManagerOptions(
            control_mode=settings.model_control_mode,
            poll_interval_s=settings.poll_interval_s,
            strict_readiness=settings.strict_readiness,
            startup_models=settings.load_model,
            drain_timeout_s=settings.exit_timeout_s,
        ),
    )
    dataplane = DataPlane(manager, events, ServerMetadata("serval", __version__, EXTENSIONS))
    control = ControlPlane(manager)
    telemetry = build_telemetry(settings, events, dataplane, inference_pool, span_exporter)
    rest_app = build_rest_app(
        dataplane,
        control,
        max_request_bytes=settings.max_request_bytes,
        metrics=telemetry.metrics_endpoint,
        access_log=settings.access_log,
    )
    if settings.workers > 1:  # say which worker process answered
        rest_app = WorkerHeaderMiddleware(rest_app)
    grpc_service = _grpc_service(settings, dataplane, control) if settings.grpc_port else None
    return Server(
        settings,
        manager,
        rest_app,
        grpc_service,
        [inference_pool, load_pool],
        on_stop=telemetry.on_stop,
    )


@dataclass
class Telemetry:
    """What observability adds to the server: the /metrics renderer (None when metrics are
    off) and what to call when the server stops."""

    metrics_endpoint: Callable[[], tuple[bytes, str]] | None = None
    on_stop: list[Callable[[], None]] = field(default_factory=list)


def build_telemetry(
    settings: Settings,
    events: EventBus,
    dataplane: DataPlane,
    inference_pool: ThreadPoolExecutor,
    span_exporter: SpanExporter | None = None,
) -> Telemetry:
    """Metrics on a registry of their own (never prometheus_client's global one), tracing
    only when asked; each subscribes to the events it needs (one record per request)."""
    telemetry = Telemetry()
    if settings.metrics:
        registry = CollectorRegistry()
        metrics = ServalMetrics(
            registry,
            workload=dataplane.workload,
            pool_queue_depth=inference_pool._work_queue.qsize,  # jobs no thread has taken
        )
        events.on_state_changed(metrics.on_state_changed)
        events.on_request(metrics.on_request)
        events.on_prediction(metrics.on_prediction, metrics.wants_prediction)
        telemetry.metrics_endpoint = partial(exposition, registry)
    if settings.tracing:
        try:
            from serval.observability.tracing import Tracing  # noqa: PLC0415 - optional extra

            tracing = Tracing(
                service_name=settings.service_name,
                otlp_endpoint=settings.otlp_endpoint,
                sample_ratio=settings.trace_sample_ratio,
                exporter=span_exporter,
            )
        except ImportError as exc:
            logger.warning(
                "tracing is disabled: %s is not installed (pip install 'serval[observability]')",
                exc.name,
            )
        else:
            events.on_request(tracing.on_request, headers=True)
            telemetry.on_stop.append(tracing.shutdown)
    return telemetry


def _grpc_service(
    settings: Settings, dataplane: DataPlane, control: ControlPlane
) -> GrpcService | None:
    try:
        from serval.protocols.grpc.server import GrpcServer  # noqa: PLC0415 - optional extra
    except ImportError as exc:
        logger.warning(
            "gRPC is disabled: %s is not installed (pip install 'serval[grpc]')", exc.name
        )
        return None
    return GrpcServer(
        dataplane,
        control,
        host=settings.host,
        port=settings.grpc_port,
        max_message_bytes=settings.grpc_max_message_bytes,
        reuse_port=settings.workers > 1,
        access_log=settings.access_log,
    )


def log_state_change(event: StateChanged) -> None:
    name, version = event.id.name, event.id.version
    if event.state is ServableState.AVAILABLE:
        took = f" in {event.duration_s:.2f} s" if event.duration_s is not None else ""
        logger.info("model %s version %d loaded%s", name, version, took)
    elif event.state is ServableState.END and event.error:
        logger.error("model %s version %d failed to load: %s", name, version, event.error)
    elif event.state is ServableState.END:
        logger.info("model %s version %d unloaded", name, version)
    elif event.state is ServableState.LOADING:
        logger.info("model %s version %d loading", name, version)
