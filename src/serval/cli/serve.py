"""``serval serve MODEL_REPOSITORY``: run the server until SIGTERM/SIGINT; with ``--workers N``,
N server processes under a supervisor (``cli.supervisor``)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from serval.app import build
from serval.cli.supervisor import supervise
from serval.config import Settings
from serval.core.errors import PortInUseError
from serval.core.model_spec import describe_validation_error
from serval.observability.logging import configure_logging
from serval.observability.otel_config import TracingConfigError
from serval.security.tokens import TokenFileError, TokenTable
from serval.storage.open_repository import check_repository_url

_THREAD_EXIT_WAIT_S = 1.0

# flag -> Settings field; every one is also SERVAL_<FIELD> in the environment.
_FLAGS: dict[str, dict[str, Any]] = {
    "--host": {"help": "address to listen on (default 127.0.0.1)"},
    "--http-port": {"type": int, "help": "REST port (default 8080)"},
    "--grpc-port": {"type": int, "help": "gRPC port (default 8081; 0 disables gRPC)"},
    "--model-control-mode": {
        "choices": ["poll", "explicit", "none"],
        "help": "as Triton's (default poll)",
    },
    "--poll-interval-s": {"type": float, "help": "seconds between repository scans (default 2)"},
    "--strict-readiness": {"help": "true (default): ready only when every model serves"},
    "--load-model": {"action": "append", "help": "explicit mode: load at start (repeatable)"},
    "--max-request-bytes": {"type": int, "help": "request body limit (default 64 MiB)"},
    "--grpc-max-message-bytes": {"type": int, "help": "gRPC message limit (default 64 MiB)"},
    "--inference-threads": {"type": int, "help": "inference thread pool (default: CPU count)"},
    "--exit-timeout-s": {"type": float, "help": "grace for requests in flight on shutdown"},
    "--drain-delay-s": {
        "type": float,
        "help": "on SIGTERM, report not ready and keep serving this long before stopping "
        "(default 5 inside Kubernetes, else 0)",
    },
    "--switch-interval-us": {
        "type": int,
        "help": "GIL switch interval in microseconds (default 100; 0 = Python's 5000)",
    },
    "--workers": {
        "type": int,
        "help": "server processes sharing the ports, each loading every model (default 1)",
    },
    "--auth-tokens": {"help": "file of 'ROLE TOKEN' lines: require bearer tokens"},
    "--auth-open-health": {"help": "true (default): health probes need no token"},
    "--auth-rate-limit": {"type": float, "help": "requests a second per token (default 0: none)"},
    "--auth-rate-burst": {"type": int, "help": "requests a token may make at once"},
    "--tls-cert": {"help": "PEM certificate: serve REST and gRPC over TLS"},
    "--tls-key": {"help": "PEM private key of --tls-cert"},
    "--tls-client-ca": {"help": "PEM CA bundle: require client certificates (mutual TLS)"},
    "--max-header-bytes": {"type": int, "help": "largest HTTP request head (default 64 KiB)"},
    "--header-timeout-s": {"type": float, "help": "time to send HTTP headers (default 10)"},
    "--keep-alive-timeout-s": {"type": int, "help": "idle HTTP connection timeout (default 5)"},
    "--max-connections": {
        "type": int,
        "help": "open HTTP connections served (default 0: half the open-file limit)",
    },
    "--redis-url": {
        "help": "Redis for state replicas share (bandit arms, caches, features, precomputed "
        "answers), e.g. redis://host:6379/0"
    },
    "--redis-prefix": {"help": "prefix of serval's Redis keys (default serval:)"},
    "--redis-timeout-s": {
        "type": float,
        "help": "longest wait for one Redis exchange of a request (default 0.25)",
    },
    "--state-dir": {
        "help": "folder of serval's state: SQLite evaluation store, spilled records "
        "(default $XDG_STATE_HOME/serval or ~/.local/state/serval)"
    },
    "--store": {"help": "evaluation store shared by replicas: postgresql://user@host:5432/db"},
    "--prediction-log-queue": {
        "type": int,
        "help": "logged predictions waiting to be written; beyond it they are dropped, counted",
    },
    "--evaluation-interval-s": {
        "type": float,
        "help": "seconds between quality and drift checks of monitored models (default 30)",
    },
    "--log-level": {
        "choices": ["debug", "info", "warning", "error"],
        "help": "the least severe log lines written (default info)",
    },
    "--log-format": {
        "choices": ["auto", "json", "text"],
        "help": "auto (default): JSON lines unless stderr is a terminal",
    },
    "--access-log": {
        "action": argparse.BooleanOptionalAction,
        "help": "log every HTTP request and RPC (default off)",
    },
    "--metrics": {
        "action": argparse.BooleanOptionalAction,
        "help": "Prometheus metrics at GET /metrics (default on)",
    },
    "--openapi": {"help": "true (default): the REST API's OpenAPI description at /openapi.json"},
    "--tracing": {
        "action": argparse.BooleanOptionalAction,
        "help": "OpenTelemetry traces over OTLP (default off; needs serval-server[observability])",
    },
    # The three below win over OpenTelemetry's OTEL_* variables, which decide when unset.
    "--otlp-endpoint": {
        "help": "OTLP trace collector (default: OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT, else "
        "http://localhost:4317)"
    },
    "--service-name": {"help": "service.name in traces (default: OTEL_SERVICE_NAME, else serval)"},
    "--trace-sample-ratio": {
        "type": float,
        "help": "share of new traces kept (default: OTEL_TRACES_SAMPLER, else all)",
    },
    "--config": {"help": "YAML file with any of these settings"},
}


def register(commands: Any, summary: str) -> None:
    parser = commands.add_parser(
        "serve",
        help=summary,
        description="Serve a model repository over REST (Open Inference Protocol V2, TF "
        "Serving V1) and gRPC. Every flag is also SERVAL_<FLAG> in the environment.",
    )
    parser.add_argument(
        "model_repository", nargs="?", help="folder of models (or SERVAL_MODEL_REPOSITORY)"
    )
    for flag, options in _FLAGS.items():
        parser.add_argument(flag, default=None, **options)
    parser.set_defaults(run=run)


def settings_from_args(args: argparse.Namespace) -> Settings:
    given = {
        key: value
        for key, value in vars(args).items()
        if value is not None and key not in ("run", "command")
    }
    for name in ("strict_readiness", "auth_open_health", "openapi"):
        if name in given:
            given[name] = _parse_bool(given[name], "--" + name.replace("_", "-"))
    return Settings(**given)


def _parse_bool(value: str, flag: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("true", "1", "yes", "on"):
        return True
    if lowered in ("false", "0", "no", "off"):
        return False
    raise ValueError(f"{flag}: expected true or false, received {value!r}")


def run(args: argparse.Namespace) -> int:
    try:
        settings = settings_from_args(args)
    except ValidationError as exc:
        print(f"serval serve: {describe_validation_error(exc)}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"serval serve: {exc}", file=sys.stderr)
        return 2
    if settings.repository_url is not None:
        problem = check_repository_url(settings.repository_url)
        if problem is not None:
            print(f"serval serve: model repository {problem}", file=sys.stderr)
            return 2
    elif not Path(settings.model_repository).is_dir():
        print(
            f"serval serve: model repository {settings.model_repository} is not a folder",
            file=sys.stderr,
        )
        return 2
    if settings.auth_tokens is not None:
        try:  # a bad token file stops the start here, before any worker starts
            TokenTable.from_file(settings.auth_tokens)
        except TokenFileError as exc:
            print(f"serval serve: {exc}", file=sys.stderr)
            return 2
    configure_logging(settings.log_level, settings.log_format)
    if settings.workers > 1:
        return supervise(settings)
    return serve_settings(settings)


def serve_settings(settings: Settings) -> int:
    """Build the server and run it until SIGTERM/SIGINT: the whole of a single-process server,
    and the body of each worker. Returns the exit status."""
    try:
        server = build(settings)
        _run_loop(server.run())
    except PortInUseError as exc:
        flag = "--" + exc.setting.replace("_", "-")
        logging.getLogger("serval.server").error(
            "cannot start: %s; choose another port with %s (or SERVAL_%s), or stop the program "
            "that holds it",
            exc.message,
            flag,
            exc.setting.upper(),
        )
        return 1
    except OSError as exc:
        logging.getLogger("serval.server").error("cannot start: %s", exc)
        return 1
    except TracingConfigError as exc:  # an OTEL_* variable asks for what serval cannot do
        logging.getLogger("serval.server").error("cannot start: tracing: %s", exc)
        return 1
    _exit_now_if_threads_remain()
    return 0


def _exit_now_if_threads_remain() -> None:
    """A model call that never returns holds an inference thread, and Python waits for every
    such (non-daemon) thread at exit: exit at once instead, saying so."""
    deadline = time.monotonic() + _THREAD_EXIT_WAIT_S  # idle pool threads are leaving now
    for thread in threading.enumerate():
        if thread is not threading.main_thread() and not thread.daemon:
            thread.join(max(0.0, deadline - time.monotonic()))
    stuck = [
        thread.name
        for thread in threading.enumerate()
        if thread is not threading.main_thread() and thread.is_alive() and not thread.daemon
    ]
    if not stuck:
        return
    logging.getLogger("serval.server").warning(
        "exiting with %d thread(s) still running (a model call that did not return): %s",
        len(stuck),
        ", ".join(stuck),
    )
    logging.shutdown()  # flush the log handlers: os._exit skips them
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _run_loop(main: Any) -> None:
    try:
        import uvloop  # noqa: PLC0415 - optional speed-up
    except ImportError:
        asyncio.run(main)
    else:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(main)
