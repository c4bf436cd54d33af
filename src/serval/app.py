"""Composition root: builds the whole server from settings. The only place that wires parts."""

from __future__ import annotations

import ipaddress
import logging
import math
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry

from serval import __version__
from serval.config import Settings
from serval.core.batching.servable import BatchingOptions, BatchingServable
from serval.core.composition.cascade import CascadeCounts
from serval.core.composition.composite import CompositeServables
from serval.core.composition.layer_counters import LayerCounters
from serval.core.composition.layers import Composition
from serval.core.composition.plan import ServerLayerPlan
from serval.core.composition.time_limit import TimeLimitedServable
from serval.core.control import ControlPlane
from serval.core.dataplane import DataPlane, ServerMetadata
from serval.core.events import EventBus
from serval.core.lifecycle.manager import LifecycleManager, ManagerOptions
from serval.core.model_spec import ModelSpec
from serval.core.routing.bandit_store import BanditStore
from serval.core.routing.router import Router
from serval.core.routing.shadow import ShadowBook
from serval.core.routing.traffic import TrafficController
from serval.core.servable import (
    CallLimits,
    Predictor,
    Servable,
    ThreadPoolServable,
    TimedPredictor,
)
from serval.core.shadow import SHADOWS_PER_THREAD, ShadowRunner
from serval.evaluation.continuous import ContinuousEvaluation, Rollouts
from serval.observability.composite_metrics import CompositeMetrics
from serval.observability.layer_metrics import LayerMetrics
from serval.observability.metrics import ServalMetrics, exposition
from serval.observability.model_log import ModelStateLog
from serval.observability.shadow_metrics import ShadowReport
from serval.observability.span_attributes import ServerAddress
from serval.observability.traffic_metrics import TrafficMetrics
from serval.protocols.rest.app import build_rest_app
from serval.protocols.rest.auth import AuthMiddleware
from serval.protocols.rest.v2 import EXTENSIONS
from serval.protocols.rest.worker_header import WorkerHeaderMiddleware
from serval.runtimes.registry import RuntimeRegistry
from serval.security.access import AccessPolicy
from serval.security.rate_limit import RateLimiter
from serval.security.tls import TlsFiles
from serval.security.tokens import TokenTable
from serval.server import GrpcService, Server
from serval.storage.lookup_stores import ServerLookupStores
from serval.storage.open_repository import open_model_repository
from serval.storage.open_store import open_evaluation_store

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export import SpanExporter

logger = logging.getLogger("serval.models")
security_logger = logging.getLogger("serval.security")


def build(settings: Settings, *, span_exporter: SpanExporter | None = None) -> Server:
    """``span_exporter`` replaces the OTLP exporter when tracing is on (tests)."""
    events = EventBus()
    events.on_state_changed(ModelStateLog())
    # One more thread than cores by default: a model gets at most threads - 1 (call_limits), so
    # one model alone still runs a call per core, and a hung one leaves a thread to the others.
    threads = settings.inference_threads or (os.cpu_count() or 1) + 1
    inference_pool = ThreadPoolExecutor(threads, thread_name_prefix="serval-infer")
    load_pool = ThreadPoolExecutor(4, thread_name_prefix="serval-load")

    def base(predictor: Predictor, spec: ModelSpec) -> Servable:
        # A model with a queue (it batches, or sets instances or dynamic_batching) runs on
        # threads of its own, one per instance, so a batch never waits behind other models'
        # work; the others share the inference pool (docs/batching.md#threads).
        if spec.scheduled:
            return BatchingServable(predictor, BatchingOptions.from_spec(spec))
        servable: Servable = ThreadPoolServable(
            predictor, inference_pool, call_limits(spec, threads)
        )
        if isinstance(predictor, TimedPredictor) and predictor.call_timeout_s is not None:
            servable = TimeLimitedServable(servable, predictor.call_timeout_s)
        return servable

    # A pipeline, cascade or ensemble is built by the same Composition: its composite
    # servable is the base in place of a runtime's, and the plan's layers wrap it.
    cascade_counts = CascadeCounts()
    layer_counters = LayerCounters()
    lookups = lookup_stores(settings, layer_counters)
    repository = open_model_repository(settings.model_repository, settings.state_dir)
    manager = LifecycleManager(
        repository.source,
        RuntimeRegistry.default(),
        Composition(
            base, ServerLayerPlan(lookups, layer_counters), CompositeServables(cascade_counts)
        ),
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
    router = Router()
    # Shadow copies in flight, over the whole server: a small multiple of the inference
    # threads; beyond it copies are dropped and counted (docs/rollout.md). The runner writes
    # the book of shadow statistics; the traffic API and the metrics read it.
    shadows = ShadowRunner(manager, events, ShadowBook(), SHADOWS_PER_THREAD * threads)
    traffic = TrafficController(manager, router, events, shadows.book, store=bandit_store(settings))
    evaluation = continuous_evaluation(settings, repository.folder)
    dataplane = DataPlane(
        manager,
        events,
        ServerMetadata("serval", __version__, EXTENSIONS),
        router,
        shadows=shadows,
        ground_truth=evaluation.ground_truth,
        degraded=[evaluation.degraded, repository.degraded, lookups.degraded],
    )
    evaluation_reader = evaluation.attach(
        events,
        configured=manager.on_configured,
        metadata=dataplane.model_metadata,
        known=dataplane.model_status,
        rollouts=Rollouts(traffic.rolls_back_on_alert, traffic.roll_back_on_alert),
    )
    control = ControlPlane(manager, traffic)
    telemetry = build_telemetry(
        settings,
        events,
        dataplane,
        inference_pool,
        span_exporter,
        shadow_report=shadows.book.every_model,
        cascade_counts=cascade_counts,
        layer_counters=layer_counters,
    )
    telemetry.on_stop.append(traffic.close)
    if telemetry.registry is not None:
        TrafficMetrics(telemetry.registry, traffic.models, traffic.rollbacks)
        evaluation.register_metrics(telemetry.registry)
    rest_app = build_rest_app(
        dataplane,
        control,
        max_request_bytes=settings.max_request_bytes,
        metrics=telemetry.metrics_endpoint,
        access_log=settings.access_log,
        openapi_version=__version__ if settings.openapi else None,
        bearer_auth=settings.auth_tokens is not None,
        open_health=settings.auth_open_health,
        evaluation=evaluation_reader,
    )
    access = access_policy(settings)
    if access is not None:
        rest_app = AuthMiddleware(rest_app, access, access_log=settings.access_log)
    if settings.workers > 1:  # say which worker process answered
        rest_app = WorkerHeaderMiddleware(rest_app)
    grpc_service = (
        _grpc_service(settings, dataplane, control, access) if settings.grpc_port else None
    )
    return Server(
        settings,
        _tls(settings),
        manager,
        rest_app,
        grpc_service,
        [inference_pool, load_pool],
        # The log is written to its end after shadows stopped (they log too), before traces.
        on_stop=[evaluation.close, lookups.close, *telemetry.on_stop],
        before_unload=[dataplane.close],
        background=[evaluation.run],
        on_drain=[dataplane.begin_draining],
    )


def lookup_stores(settings: Settings, counters: LayerCounters) -> ServerLookupStores:
    """The stores of the cache, features and precomputed layers: memory, the server's
    ``--redis-url`` (connected on first use, so a server without such models never touches
    it) and SQLite files."""
    return ServerLookupStores(
        settings.redis_url,
        prefix=settings.redis_prefix,
        timeout_s=settings.redis_timeout_s,
        counters=counters,
    )


def continuous_evaluation(settings: Settings, repository: Path) -> ContinuousEvaluation:
    """Continuous evaluation over the store the settings name: PostgreSQL with ``--store``,
    else SQLite under ``--state-dir`` (neither is touched until a model is monitored);
    ``repository``: the local folder of the model repository (an object store's cache)."""
    return ContinuousEvaluation(
        open_evaluation_store(settings.store, settings.state_dir),
        repository,
        settings.state_dir,
        queue_size=settings.prediction_log_queue,
        interval_s=settings.evaluation_interval_s,
    )


def bandit_store(settings: Settings) -> BanditStore | None:
    """Redis for the bandits' arms when ``--redis-url`` is set (else each process keeps its
    own); an unreachable Redis is noticed, and logged, at the first exchange."""
    if settings.redis_url is None:
        return None
    try:
        from serval.storage.redis_bandits import RedisBanditStore  # noqa: PLC0415 - extra
    except ImportError as exc:
        logger.warning(
            "--redis-url is ignored: %s is not installed (pip install 'serval-server[redis]')",
            exc.name,
        )
        return None
    return RedisBanditStore(settings.redis_url, prefix=settings.redis_prefix)


def call_limits(spec: ModelSpec, threads: int) -> CallLimits:
    """A model's share of the ``threads`` shared inference threads: never all of them, so a
    hung model leaves at least one to the others (when there are two or more)."""
    most = max(1, threads - 1)
    wanted = spec.concurrency.limit
    return CallLimits(
        max_concurrency=most if wanted is None else min(wanted, most),
        max_waiting=spec.concurrency.max_waiting,
    )


def access_policy(settings: Settings) -> AccessPolicy | None:
    """The bearer-token policy, or None when no token file is set (then nothing is checked:
    say so if the server is reachable from other hosts)."""
    if settings.auth_tokens is None:
        if not _is_loopback(settings.host):
            security_logger.warning(
                "listening on %s without --auth-tokens: the control endpoints (model load and "
                "unload, repository index) and inference are open to anyone who can reach it",
                settings.host,
            )
        return None
    tokens = TokenTable.from_file(settings.auth_tokens)
    limiter = None
    if settings.auth_rate_limit:
        burst = settings.auth_rate_burst or math.ceil(settings.auth_rate_limit)
        limiter = RateLimiter(settings.auth_rate_limit, burst)
    security_logger.info(
        "authentication on: %d tokens from %s; health probes %s",
        len(tokens),
        settings.auth_tokens,
        "open" if settings.auth_open_health else "need a token",
    )
    return AccessPolicy(tokens, open_health=settings.auth_open_health, rate_limiter=limiter)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass
class Telemetry:
    """What observability adds to the server: the /metrics renderer (None when metrics are
    off) and what to call when the server stops."""

    metrics_endpoint: Callable[[], tuple[bytes, str]] | None = None
    on_stop: list[Callable[[], object]] = field(default_factory=list)
    registry: CollectorRegistry | None = None  # the metrics' registry, when metrics are on


def build_telemetry(
    settings: Settings,
    events: EventBus,
    dataplane: DataPlane,
    inference_pool: ThreadPoolExecutor,
    span_exporter: SpanExporter | None = None,
    shadow_report: ShadowReport | None = None,
    cascade_counts: CascadeCounts | None = None,
    layer_counters: LayerCounters | None = None,
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
            shadow_report=shadow_report,
        )
        events.on_state_changed(metrics.on_state_changed)
        events.on_request(metrics.on_request)
        events.on_feedback(metrics.feedback.on_feedback)
        events.on_prediction(metrics.on_prediction, metrics.wants_prediction)
        if cascade_counts is not None:
            CompositeMetrics(registry, cascade_counts)
        if layer_counters is not None:
            LayerMetrics(registry, layer_counters)
        telemetry.metrics_endpoint = partial(exposition, registry)
        telemetry.registry = registry
    if settings.tracing:
        try:
            from serval.observability.tracing import Tracing  # noqa: PLC0415 - optional extra

            tracing = Tracing(
                service_name=settings.service_name,
                otlp_endpoint=settings.otlp_endpoint,
                sample_ratio=settings.trace_sample_ratio,
                server=ServerAddress.listening(
                    settings.host,
                    settings.http_port,
                    settings.grpc_port,
                    tls=settings.tls_cert is not None,
                ),
                exporter=span_exporter,
            )
        except ImportError as exc:
            logger.warning(
                "tracing is disabled: %s is not installed "
                "(pip install 'serval-server[observability]')",
                exc.name,
            )
        else:
            events.on_request(tracing.on_request, headers=True)
            telemetry.on_stop.append(tracing.shutdown)
    return telemetry


def _grpc_service(
    settings: Settings,
    dataplane: DataPlane,
    control: ControlPlane,
    access: AccessPolicy | None,
) -> GrpcService | None:
    try:
        from serval.protocols.grpc.server import GrpcServer  # noqa: PLC0415 - optional extra
    except ImportError as exc:
        logger.warning(
            "gRPC is disabled: %s is not installed (pip install 'serval-server[grpc]')", exc.name
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
        access=access,
        tls=_tls(settings),
        handshake_timeout_s=settings.header_timeout_s,
    )


def _tls(settings: Settings) -> TlsFiles | None:
    if settings.tls_cert is None or settings.tls_key is None:
        return None
    return TlsFiles(settings.tls_cert, settings.tls_key, settings.tls_client_ca)
