"""How the lifecycle manager runs: control mode, polling, readiness, timeouts."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class ControlMode(StrEnum):
    """As Triton's ``--model-control-mode``."""

    POLL = "poll"  # load everything, watch the repository
    EXPLICIT = "explicit"  # load only what the API (or --load-model) asks for
    NONE = "none"  # load everything once; the load/unload API is refused


@dataclass(frozen=True, slots=True)
class ManagerOptions:
    control_mode: ControlMode = ControlMode.POLL
    poll_interval_s: float = 2.0
    strict_readiness: bool = True
    startup_models: tuple[str, ...] = ()  # explicit mode; "*" loads every model
    retry_initial_s: float = 1.0
    retry_max_s: float = 300.0
    load_timeout_s: float = 600.0
    drain_timeout_s: float = 30.0
