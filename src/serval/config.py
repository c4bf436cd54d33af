"""Settings: the only module that reads the environment or a config file.

Precedence: command-line flags > ``SERVAL_<NAME>`` environment variables > the YAML config file
(``--config`` / ``SERVAL_CONFIG``) > defaults. OpenTelemetry's ``OTEL_*`` variables are
OpenTelemetry's to read (``observability/otel_config.py``): the tracing settings default to
None so that, unless one of these sources gives them, those variables decide.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from serval.core.lifecycle.manager import ControlMode

KiB = 2**10
MiB = 2**20


# Kubernetes sets this in every container; its endpoints take a few seconds to stop sending
# traffic to a pod that turned not ready (docs/deployment.md, "Graceful termination").
KUBERNETES_DRAIN_DELAY_S = 5.0


def default_drain_delay_s() -> float:
    """5 s inside Kubernetes (``KUBERNETES_SERVICE_HOST`` is set), else 0 (a plain process)."""
    return KUBERNETES_DRAIN_DELAY_S if os.environ.get("KUBERNETES_SERVICE_HOST") else 0.0


def default_state_dir() -> Path:
    """$XDG_STATE_HOME/serval, else ~/.local/state/serval (the XDG base directory spec)."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "serval"


class Settings(BaseSettings):
    """Everything ``serval serve`` can be told. Each field is also ``SERVAL_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="SERVAL_", extra="forbid", frozen=True)

    # A folder (a Path) or an object store's URL (a str, s3://bucket/prefix).
    model_repository: Path | str = Field(
        description="Folder of models and numbered versions, or an object store's "
        "s3://bucket/prefix holding the same layout (polled, downloaded under state_dir)."
    )
    config: Path | None = Field(default=None, description="YAML file holding these settings.")
    host: str = Field(default="127.0.0.1", description="Address REST and gRPC listen on.")
    http_port: int = Field(default=8080, ge=0, le=65535)
    grpc_port: int = Field(default=8081, ge=0, le=65535, description="0 disables gRPC.")
    model_control_mode: ControlMode = ControlMode.POLL
    poll_interval_s: float = Field(default=2.0, gt=0, le=3600)
    strict_readiness: bool = Field(
        default=True, description="Ready only when every model of the repository serves."
    )
    load_model: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(), description="Models loaded at start in explicit mode ('*' = all)."
    )
    max_request_bytes: int = Field(default=64 * MiB, ge=1024)
    grpc_max_message_bytes: int = Field(default=64 * MiB, ge=1024)
    inference_threads: int = Field(default=0, ge=0, description="0 = one per CPU core, plus one.")
    exit_timeout_s: float = Field(
        default=30.0, ge=0, description="How long shutdown waits for requests in flight."
    )
    drain_delay_s: float = Field(
        default_factory=default_drain_delay_s,
        ge=0,
        description="On SIGTERM, how long the server reports not ready while it keeps serving, "
        "before it stops accepting; default 5 s inside Kubernetes, else 0. A second signal "
        "ends the delay.",
    )
    switch_interval_us: int = Field(
        default=100,
        ge=0,
        le=1_000_000,
        description="How often Python hands the GIL between the event loop and inference "
        "threads, in microseconds; 0 keeps Python's default (5000).",
    )
    workers: int = Field(
        default=1,
        ge=1,
        le=512,
        description="Server processes sharing the ports (SO_REUSEPORT), each loading every "
        "model; see docs/workers.md.",
    )
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # Security (docs/security.md).
    auth_tokens: Path | None = Field(
        default=None,
        description="File of 'ROLE TOKEN' lines (roles read, infer, admin); when set, every "
        "endpoint asks for 'Authorization: Bearer <token>'.",
    )
    auth_open_health: bool = Field(
        default=True,
        description="With tokens: leave the health probes (live, ready) open to callers "
        "without a token.",
    )
    auth_rate_limit: float = Field(
        default=0.0, ge=0, description="Requests a second each token may make; 0: no limit."
    )
    auth_rate_burst: int = Field(
        default=0, ge=0, description="Requests a token may make at once; 0: the rate, rounded up."
    )
    tls_cert: Path | None = Field(default=None, description="PEM certificate: serve over TLS.")
    tls_key: Path | None = Field(default=None, description="PEM private key of tls_cert.")
    tls_client_ca: Path | None = Field(
        default=None, description="PEM CA bundle: ask clients for a certificate it signed."
    )
    max_header_bytes: int = Field(
        default=64 * KiB, ge=1024, description="Largest HTTP request line and headers."
    )
    header_timeout_s: float = Field(
        default=10.0, gt=0, description="Time an HTTP client has to send a request's headers."
    )
    keep_alive_timeout_s: int = Field(
        default=5, ge=1, description="Seconds an idle HTTP keep-alive connection stays open."
    )
    max_connections: int = Field(
        default=0,
        ge=0,
        description="Open HTTP connections served at once; 0: half the process's file limit.",
    )
    # State shared by replicas (docs/rollout.md#bandits).
    redis_url: str | None = Field(
        default=None,
        description="Redis holding state that replicas share (bandit arms, the prediction "
        "cache with backend: redis, online features, precomputed answers), e.g. "
        "redis://localhost:6379/0; without it, state is per process. Unreachable: each "
        "replica keeps its own, logged once, and serving continues.",
    )
    redis_prefix: str = Field(
        default="serval:", max_length=200, description="Prefix of every Redis key serval uses."
    )
    redis_timeout_s: float = Field(
        default=0.25,
        gt=0,
        le=60,
        description="Longest wait for one Redis exchange (connect or reply) of a request: the "
        "cache, feature lookups, precomputed answers. Past it, Redis counts as unreachable "
        "for that request (docs/caching.md#when-redis-is-down).",
    )
    # Continuous evaluation (docs/evaluation.md).
    state_dir: Path = Field(
        default_factory=default_state_dir,
        description="Folder of serval's own state: the SQLite evaluation store "
        "(evaluation.sqlite3) and records spilled while a store is down; created on first use. "
        "Default: $XDG_STATE_HOME/serval, else ~/.local/state/serval.",
    )
    store: str | None = Field(
        default=None,
        description="Database of continuous evaluation shared by replicas, "
        "postgresql://user@host:5432/db; default: SQLite under state_dir. Unreachable: serval "
        "serves, spills logged predictions to state_dir and replays them once it is back.",
    )
    prediction_log_queue: int = Field(
        default=100_000,
        ge=1,
        le=10_000_000,
        description="Logged predictions waiting for the writer; beyond it a record is dropped "
        "and counted (a request never waits).",
    )
    evaluation_interval_s: float = Field(
        default=30.0,
        gt=0,
        le=86400,
        description="How often quality and drift are computed and thresholds checked, per "
        "monitored model (GET /v2/models/{m}/evaluation also computes them).",
    )
    # Observability (docs/observability.md).
    log_format: Literal["auto", "json", "text"] = Field(
        default="auto", description="auto: JSON lines unless stderr is a terminal."
    )
    access_log: bool = Field(default=False, description="Log one line per HTTP request or RPC.")
    metrics: bool = Field(default=True, description="Prometheus metrics at GET /metrics.")
    openapi: bool = Field(
        default=True, description="The REST API's OpenAPI description at GET /openapi.json."
    )
    tracing: bool = Field(
        default=False, description="OpenTelemetry traces of inference requests, sent over OTLP."
    )
    # Unset, OpenTelemetry's own variables decide (OTEL_EXPORTER_OTLP_ENDPOINT,
    # OTEL_SERVICE_NAME, OTEL_TRACES_SAMPLER...: observability/otel_config.py); given, these win.
    otlp_endpoint: str | None = Field(
        default=None,
        description="OTLP collector for traces (unset: OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT, "
        "else http://localhost:4317).",
    )
    service_name: str | None = Field(
        default=None,
        description="service.name of the traces (unset: OTEL_SERVICE_NAME, else serval).",
    )
    trace_sample_ratio: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="Share of new traces sampled, parents deciding for theirs (unset: "
        "OTEL_TRACES_SAMPLER, else all).",
    )

    @field_validator("model_repository", mode="before")
    @classmethod
    def _repository_folder_or_url(cls, value: Any) -> Any:
        # Only an s3:// URL stays a string: a Path would fold its "//".
        if isinstance(value, str) and not value.startswith("s3://"):
            return Path(value)
        return value

    @property
    def repository_url(self) -> str | None:
        """The object store's URL when the model repository is one, else None."""
        return self.model_repository if isinstance(self.model_repository, str) else None

    @field_validator("load_model", mode="before")
    @classmethod
    def _split_commas(cls, value: Any) -> Any:
        # "a,b" from the environment, or ["a,b", "c"] from repeated flags.
        items = [value] if isinstance(value, str) else value
        if isinstance(items, list | tuple):
            return tuple(p.strip() for item in items for p in str(item).split(",") if p.strip())
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, url: str | None) -> str | None:
        if url is not None and not url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix:// (redis://host:6379/0)")
        return url

    @field_validator("store")
    @classmethod
    def _store_scheme(cls, url: str | None) -> str | None:
        if url is not None and not url.startswith(("postgresql://", "postgres://")):
            raise ValueError("must start with postgresql:// (postgresql://user@host:5432/db)")
        return url

    @model_validator(mode="after")
    def _security_settings_agree(self) -> Settings:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together: give both or neither")
        if self.tls_client_ca is not None and self.tls_cert is None:
            raise ValueError("tls_client_ca needs tls_cert and tls_key")
        if self.auth_rate_limit and self.auth_tokens is None:
            raise ValueError("auth_rate_limit limits each token: it needs auth_tokens")
        return self

    @model_validator(mode="after")
    def _workers_share_a_port(self) -> Settings:
        if self.workers > 1 and self.http_port == 0:
            raise ValueError(
                "http_port 0 (any free port) cannot be shared by several workers; choose a port"
            )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = None
        if isinstance(init_settings, InitSettingsSource):
            config_file = init_settings.init_kwargs.get("config")
        config_file = config_file or os.environ.get("SERVAL_CONFIG")
        if config_file:
            if not Path(config_file).is_file():
                raise ValueError(f"config file {config_file} does not exist")
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=config_file))
        return tuple(sources)
