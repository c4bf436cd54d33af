"""``serval serve MODEL_REPOSITORY``: run the server until SIGTERM/SIGINT; with ``--workers N``,
N server processes under a supervisor (``cli.supervisor``)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from typing import Any

from pydantic import ValidationError

from serval.app import build
from serval.cli.supervisor import supervise
from serval.config import Settings
from serval.core.model_spec import describe_validation_error
from serval.observability.logging import configure_logging

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
    "--switch-interval-us": {
        "type": int,
        "help": "GIL switch interval in microseconds (default 100; 0 = Python's 5000)",
    },
    "--workers": {
        "type": int,
        "help": "server processes sharing the ports, each loading every model (default 1)",
    },
    "--log-level": {"choices": ["debug", "info", "warning", "error"]},
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
        "help": "OpenTelemetry traces over OTLP (default off; needs serval[observability])",
    },
    "--otlp-endpoint": {"help": "OTLP/gRPC trace collector (default http://localhost:4317)"},
    "--service-name": {"help": "service.name in traces (default serval)"},
    "--trace-sample-ratio": {"type": float, "help": "share of new traces kept (default 1)"},
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
    for key in ("strict_readiness", "openapi"):
        if key in given:
            given[key] = _parse_bool(given[key], f"--{key.replace('_', '-')}")
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
    if not settings.model_repository.is_dir():
        print(
            f"serval serve: model repository {settings.model_repository} is not a folder",
            file=sys.stderr,
        )
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
    except OSError as exc:
        logging.getLogger("serval.server").error("cannot start: %s", exc)
        return 1
    return 0


def _run_loop(main: Any) -> None:
    try:
        import uvloop  # noqa: PLC0415 - optional speed-up
    except ImportError:
        asyncio.run(main)
    else:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(main)
