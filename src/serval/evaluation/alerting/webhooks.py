"""Alerts POSTed as JSON to webhooks (``monitoring.alerts.webhook``, ``retrain.webhook``), each
try with a timeout, retried with exponential backoff, the outcome recorded (docs/alerts.md).

The body of an alert: ``{"model", "version", "kind", "metric", "value", "threshold", "time",
"id"}``; ``metric`` is the quality metric or the drifted feature ("prediction" for the
model's output), ``time`` when it was raised, ISO 8601 in UTC.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
import orjson

from serval.evaluation.alerting.delivery import Shutdown
from serval.storage.evaluation import Alert, EvaluationStore, StoreUnavailableError

logger = logging.getLogger("serval.evaluation")
_HEADERS = {"content-type": "application/json", "user-agent": "serval-alerts"}


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a POST is retried: ``tries`` in all, waiting ``first_delay_s`` before the second
    and twice as long before each next one (0.5, 1, 2, 4 s by default)."""

    tries: int = 5
    first_delay_s: float = 0.5
    try_timeout_s: float = 5.0  # per try: connect, send and read the answer

    def delays(self) -> list[float]:
        """The wait before each retry, in order."""
        return [self.first_delay_s * 2**index for index in range(self.tries - 1)]


def alert_document(alert: Alert) -> dict[str, object]:
    """The JSON object an alert is sent as (webhooks, the retraining command's stdin)."""
    return {
        "model": alert.model,
        "version": alert.version,
        "kind": alert.kind,
        "metric": alert.subject,
        "value": alert.value,
        "threshold": alert.threshold,
        "time": iso_utc(alert.raised),
        "id": alert.id,
    }


def alert_body(alert: Alert) -> bytes:
    return orjson.dumps(alert_document(alert))


def iso_utc(timestamp: float) -> str:
    """``2026-12-07T02:41:26.120Z``: ISO 8601 in UTC, to the millisecond."""
    moment = datetime.fromtimestamp(timestamp, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def shown_url(url: str) -> str:
    """``url`` for logs: without credentials or query, where webhook tokens tend to be."""
    parsed = httpx.URL(url)
    port = f":{parsed.port}" if parsed.port is not None else ""
    return f"{parsed.scheme}://{parsed.host}{port}{parsed.path}"


class WebhookPoster:
    """POSTs JSON bodies with retries; shared by the worker's threads (httpx.Client is
    thread-safe and keeps connections to a webhook open between alerts)."""

    def __init__(self, policy: RetryPolicy) -> None:
        self._policy = policy
        self._client = httpx.Client(headers=_HEADERS, follow_redirects=True)

    def post(self, url: str, body: bytes, shutdown: Shutdown) -> str | None:
        """None once a try is answered 2xx; else why the last try failed and how many were
        made ("HTTP 500 after 5 tries"). Every failure is retried: a webhook answering 404
        or refusing connections during its own deployment may take the next try."""
        policy = self._policy
        failure = ""
        for attempt, delay in enumerate([0.0, *policy.delays()]):
            if attempt and not shutdown.pause(delay):
                return f"{failure} after {_tries(attempt)}, then gave up at shutdown"
            timeout = min(policy.try_timeout_s, shutdown.time_left())
            if timeout <= 0 and not attempt:
                return "not tried: the server was shutting down"
            if timeout <= 0:
                return f"{failure} after {_tries(attempt)}, then gave up at shutdown"
            failure = self._try(url, body, timeout)
            if not failure:
                return None
        return f"{failure} after {_tries(policy.tries)}"

    def close(self) -> None:
        self._client.close()

    def _try(self, url: str, body: bytes, timeout_s: float) -> str:
        """One POST: "" when answered 2xx, else why not."""
        try:
            response = self._client.post(url, content=body, timeout=timeout_s)
        except httpx.TimeoutException:
            return f"no answer within {timeout_s:g} s"
        except httpx.ConnectError as exc:
            return f"cannot connect ({exc})"
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__} ({exc})"
        return "" if response.is_success else f"HTTP {response.status_code}"


@dataclass(frozen=True, slots=True)
class AlertDelivery:
    """The job that POSTs a raised alert to ``monitoring.alerts.webhook`` and records the
    outcome as the alert's delivery ("delivered", or "failed" with the reason)."""

    alert: Alert
    url: str
    poster: WebhookPoster
    store: EvaluationStore

    def run(self, shutdown: Shutdown) -> None:
        alert = self.alert
        assert alert.id is not None, "only alerts the store raised are delivered"
        failure = self.poster.post(self.url, alert_body(alert), shutdown)
        if failure is None:
            logger.debug("alert %d delivered to %s", alert.id, shown_url(self.url))
        else:
            logger.warning(
                "model %s version %d: alert %d not delivered to %s: %s",
                alert.model,
                alert.version,
                alert.id,
                shown_url(self.url),
                failure,
                extra={"model": alert.model, "version": alert.version, "alert_id": alert.id},
            )
        try:
            if failure is None:
                self.store.set_delivery(alert.id, "delivered")
            else:
                self.store.set_delivery(alert.id, "failed", failure)
        except StoreUnavailableError as exc:
            logger.warning(
                "alert %d: its delivery could not be recorded: the store is unavailable (%s)",
                alert.id,
                exc,
            )


def _tries(count: int) -> str:
    return "1 try" if count == 1 else f"{count} tries"
