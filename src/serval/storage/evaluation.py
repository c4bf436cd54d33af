"""What continuous evaluation keeps, and the protocol of the stores that keep it
(docs/evaluation.md): logged predictions, ground truth, alerts and retraining triggers.

Implementations: ``MemoryEvaluationStore`` (tests), ``SqliteEvaluationStore`` (the embedded
default, a file under ``--state-dir``) and ``PostgresEvaluationStore`` (``--store
postgresql://...``); ``open_evaluation_store`` picks one from the settings. One contract suite
(tests/storage/test_evaluation_contract.py) runs against each.

The methods are blocking: callers run them off the event loop (the prediction log's writer
thread, ``asyncio.to_thread``). Each is safe to call from several threads, and several
processes (workers, replicas) may share one SQLite file or PostgreSQL database: the methods
that decide something once (``raise_alert``, ``claim_trigger``) decide it atomically in the
store. A store that cannot be reached raises ``StoreUnavailableError`` (the caller spills or
degrades); a store never raises it for anything else.

Tensors are opaque here: ``LoggedPrediction.inputs`` and ``outputs`` are bytes that the
evaluation encodes and decodes (``serval.evaluation.recording.tensor_log``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

Role = Literal["primary", "shadow"]
AlertKind = Literal["quality", "drift"]
Delivery = Literal["pending", "delivered", "failed", "none"]


class StoreUnavailableError(Exception):
    """The store cannot be reached (down, refusing connections, timed out): nothing was
    written. Raised for nothing else."""


class StoreSchemaError(StoreUnavailableError):
    """The store's tables cannot be used or made (a schema written by a newer serval, a role
    without the right to create tables): to this serval it is unavailable, so callers degrade
    as for a store that is down, and the message says why."""


@dataclass(frozen=True, slots=True)
class LoggedPrediction:
    """One logged inference request (one or more rows) and its answer."""

    model: str
    version: int
    request_id: str | None  # the V2 id / x-request-id its answer carried
    timestamp: float  # time.time() when it was answered
    role: Role  # primary: the client got this answer; shadow: a compared copy
    latency_ms: float  # the data plane's time for it
    rows: int  # its batch elements (inputs' first dimension)
    # One text per row: the row's key (keyed predictions, core.feedback.key_text), None for a
    # model without keys.
    keys: tuple[str, ...] | None
    inputs: bytes  # the request's tensors, keys left out (serval.evaluation.recording.tensor_log)
    outputs: bytes  # the answer's tensors, keys left out
    id: int | None = None  # the store's id, set on the records it reads back


@dataclass(frozen=True, slots=True)
class GroundTruth:
    """The true answer to one request (by ``request_id``) or to the rows of one key (by
    ``key``): exactly one of the two is set."""

    model: str
    request_id: str | None
    key: str | None  # core.feedback.key_text of the key the client sent
    value: bytes  # orjson of the JSON value (one value, or one per row of a request)
    received: float  # time.time()


@dataclass(frozen=True, slots=True)
class Label:
    """Ground truth joined to a logged prediction. ``row`` is the row it labels (ground truth
    by key), None when it labels the whole request (by id: one value per row)."""

    value: bytes  # orjson, as GroundTruth.value
    row: int | None
    received: float


@dataclass(frozen=True, slots=True)
class LabelledPrediction:
    prediction: LoggedPrediction
    label: Label


@dataclass(frozen=True, slots=True)
class JoinedPrediction:
    """A logged prediction with every label joined to it (none: not labelled yet)."""

    prediction: LoggedPrediction
    labels: tuple[Label, ...]


@dataclass(frozen=True, slots=True)
class VersionCounts:
    logged: int  # primary predictions logged
    labelled: int  # of those, how many have ground truth


@dataclass(frozen=True, slots=True)
class Alert:
    """A threshold crossed by one version: quality (``subject`` is the metric) or drift
    (``subject`` is the feature, or "prediction")."""

    model: str
    version: int
    kind: AlertKind
    subject: str
    value: float
    threshold: float
    raised: float  # time.time()
    cleared: float | None = None  # when the value came back within the threshold
    delivery: Delivery = "pending"  # of the webhook POST; "none" without a webhook
    detail: str = ""  # why a delivery failed
    id: int | None = None


@dataclass(frozen=True, slots=True)
class Trigger:
    """A retraining trigger that ran (or failed to)."""

    model: str
    version: int
    alert_id: int | None  # the alert that caused it
    at: float  # time.time()
    action: str  # "webhook", "command", or both: "webhook+command"
    outcome: str  # "ok", or why it failed ("command exited 2", "webhook: HTTP 500")
    id: int | None = None


class EvaluationStore(Protocol):
    """Where logged predictions, ground truth, alerts and triggers are kept."""

    @property
    def location(self) -> str:
        """Where the store is, for logs and readiness (no password): "sqlite:/path",
        "postgresql://host:5432/db", "memory"."""
        ...

    def write_predictions(self, records: Sequence[LoggedPrediction]) -> None:
        """Write ``records`` at once (one transaction), and join to them any ground truth
        already stored for their request ids or keys."""
        ...

    def write_ground_truth(self, items: Sequence[GroundTruth]) -> int:
        """Store ``items`` durably (committed when this returns) and join each to its logged
        prediction: by request id (every prediction logged with that id: the primary answer
        and its shadow copies), or by key to the latest logged primary prediction of a row
        with that key answered before the item was received. Items whose prediction is not
        logged (yet) are kept and joined when it is; an item joined by key stays with that
        row. Returns how many items were joined now."""
        ...

    def recent_predictions(
        self, model: str, version: int, limit: int, role: Role = "primary"
    ) -> list[LoggedPrediction]:
        """The latest ``limit`` logged predictions of ``version``, newest first."""
        ...

    def labelled(self, model: str, version: int, limit: int) -> list[LabelledPrediction]:
        """The latest ``limit`` labels joined to primary predictions of ``version`` (newest
        label first), each with its prediction."""
        ...

    def counts(self, model: str) -> dict[int, VersionCounts]:
        """Per version of ``model`` that has logged primary predictions: how many, how many
        of those have at least one label."""
        ...

    def joined(self, model: str, batch: int = 10_000) -> Iterator[list[JoinedPrediction]]:
        """Every logged prediction of ``model`` (every version and role) with its labels, in
        the order they were logged, ``batch`` at a time (export: never all in memory)."""
        ...

    def raise_alert(self, alert: Alert) -> Alert | None:
        """Record ``alert`` unless one of the same model, version, kind and subject is active
        (not cleared): then None. Atomic: of several processes raising the same alert at
        once, exactly one gets it back (with its id)."""
        ...

    def clear_alert(
        self, model: str, version: int, kind: AlertKind, subject: str, at: float
    ) -> bool:
        """Mark the active alert of that model, version, kind and subject cleared at ``at``;
        False when none was active."""
        ...

    def set_delivery(self, alert_id: int, delivery: Delivery, detail: str = "") -> None: ...

    def alerts(self, model: str, limit: int = 100) -> list[Alert]:
        """The latest alerts of ``model``, newest first."""
        ...

    def claim_trigger(self, model: str, now: float, cooldown_s: float) -> bool:
        """Whether a retraining trigger of ``model`` may run at ``now``: True, and recorded as
        the model's last trigger, when none was claimed within ``cooldown_s`` before; else
        False. Atomic across processes."""
        ...

    def record_trigger(self, trigger: Trigger) -> Trigger:
        """Keep what a trigger did; returns it with its id."""
        ...

    def triggers(self, model: str, limit: int = 100) -> list[Trigger]:
        """The latest triggers of ``model``, newest first."""
        ...

    def close(self) -> None:
        """Release connections; the store is not used after."""
        ...
