"""The ``serval.models`` log: one line per state change of a model version.

The manager retries a failed load with backoff (1 s, 2 s, 4 s ... up to retry_max_s); a load that
fails again with the same reason, a mistake in ``runtime_options`` say, is logged at DEBUG, so the
log says it once rather than every few seconds. A new reason is logged again.
"""

from __future__ import annotations

import logging

from serval.core.events import StateChanged
from serval.core.lifecycle.states import ServableId, ServableState

logger = logging.getLogger("serval.models")


class ModelStateLog:
    """An ``EventBus`` state-change subscriber (it runs on the event loop)."""

    def __init__(self) -> None:
        self._failing: dict[ServableId, str] = {}  # the reason logged for a failing version

    def __call__(self, event: StateChanged) -> None:
        servable_id, state = event.id, event.state
        name, version = servable_id.name, servable_id.version
        if state is ServableState.LOADING:
            retrying = servable_id in self._failing
            level = logging.DEBUG if retrying else logging.INFO
            logger.log(level, "model %s version %d loading", name, version)
        elif state is ServableState.AVAILABLE:
            self._failing.pop(servable_id, None)
            took = f" in {event.duration_s:.2f} s" if event.duration_s is not None else ""
            logger.info("model %s version %d loaded%s", name, version, took)
        elif state is ServableState.END and event.error:
            if self._failing.get(servable_id) == event.error:
                logger.debug("model %s version %d failed to load again", name, version)
                return
            self._failing[servable_id] = event.error
            logger.error("model %s version %d failed to load: %s", name, version, event.error)
        elif state is ServableState.END:
            self._failing.pop(servable_id, None)
            logger.info("model %s version %d unloaded", name, version)
