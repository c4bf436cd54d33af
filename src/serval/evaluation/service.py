"""What the REST adapter asks of continuous evaluation: a model's evaluation, computed now.

The adapter translates; this decides what an unknown model, an unmonitored one and an
unreachable store answer (404, 404, 503 with Retry-After).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from serval.core.errors import ModelNotFoundError, ServerNotReadyError
from serval.evaluation.recording.monitored import MonitoredModels
from serval.evaluation.results import ModelEvaluation
from serval.storage.evaluation import StoreUnavailableError

_RETRY_AFTER_S = 5.0


class EvaluationReader(Protocol):
    async def evaluation(self, model: str) -> dict[str, object]: ...


class EvaluationService:
    def __init__(
        self,
        monitored: MonitoredModels,
        evaluate: Callable[[str], Awaitable[ModelEvaluation]],
        known: Callable[[str], object],
    ) -> None:
        """``evaluate`` computes a model's evaluation off the loop; ``known`` raises
        ``ModelNotFoundError`` for a model the server does not know."""
        self._monitored = monitored
        self._evaluate = evaluate
        self._known = known

    async def evaluation(self, model: str) -> dict[str, object]:
        self._known(model)
        if self._monitored.get(model) is None:
            raise ModelNotFoundError(
                f"model {model!r} is not monitored: its model.yaml has no monitoring section "
                f"(docs/evaluation.md)"
            )
        try:
            result = await self._evaluate(model)
        except StoreUnavailableError as exc:
            raise ServerNotReadyError(
                f"the evaluation store is unreachable: {exc}", retry_after_s=_RETRY_AFTER_S
            ) from None
        except LookupError:  # the monitoring section went away meanwhile
            raise ModelNotFoundError(f"model {model!r} is not monitored") from None
        return result.to_json()
