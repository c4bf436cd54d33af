"""Composition root: builds the whole server from settings. The only place that wires parts."""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor

from serval import __version__
from serval.config import Settings
from serval.core.control import ControlPlane
from serval.core.dataplane import DataPlane, ServerMetadata
from serval.core.events import EventBus, StateChanged
from serval.core.manager import LifecycleManager, ManagerOptions
from serval.core.model_spec import ModelSpec
from serval.core.repository import FileSystemSource
from serval.core.servable import Predictor, Servable, ThreadPoolServable
from serval.core.states import ServableState
from serval.protocols.rest.app import build_rest_app
from serval.protocols.rest.v2 import EXTENSIONS
from serval.runtimes.registry import RuntimeRegistry
from serval.server import GrpcService, Server

logger = logging.getLogger("serval.models")


def build(settings: Settings) -> Server:
    events = EventBus()
    events.on_state_changed(log_state_change)
    threads = settings.inference_threads or os.cpu_count() or 1
    inference_pool = ThreadPoolExecutor(threads, thread_name_prefix="serval-infer")
    load_pool = ThreadPoolExecutor(4, thread_name_prefix="serval-load")

    def wrap(predictor: Predictor, spec: ModelSpec) -> Servable:
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
    rest_app = build_rest_app(dataplane, control, max_request_bytes=settings.max_request_bytes)
    grpc_service = _grpc_service(settings, dataplane, control) if settings.grpc_port else None
    return Server(settings, manager, rest_app, grpc_service, [inference_pool, load_pool])


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
