"""The prediction log: a sample of each monitored model's requests, written to the evaluation
store off the request path (docs/evaluation.md#the-prediction-log).

On the event loop a request pays for one dictionary lookup (is its model monitored?) and, when
sampled, one ``random()``, the encoding of its tensors (``tensor_log``: a few microseconds of
orjson) and one append to a bounded queue; a full queue drops the record and counts it, a
request never waits. The queue holds only immutable bytes and scalars, never the request: a
request kept alive for the writer's next batch would survive the garbage collector's young
generations and make its full collections frequent and long (measured: that alone cost more
than a tenth of the throughput at ``sample_rate: 1.0``). A writer thread takes the queue in
batches and writes each in one transaction. When the store cannot be
reached, batches go to a spill file under the state folder and are replayed once it answers
again. ``close`` (a clean shutdown) writes, or spills, every queued record before it returns:
nothing is lost but what a full queue dropped, and that is counted.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass

from serval.core.events import PredictionEvent
from serval.core.types import InferenceRequest
from serval.evaluation.recording.tensor_log import encode_tensors, key_texts
from serval.storage.evaluation import (
    EvaluationStore,
    LoggedPrediction,
    Role,
    StoreUnavailableError,
)
from serval.storage.spill import SpillFile

logger = logging.getLogger("serval.evaluation")

DEFAULT_BATCH = 500
# How long records may wait to be gathered into one write: each write is a transaction
# (and a commit to disk), so a batch of hundreds costs about what one record does.
DEFAULT_FLUSH_S = 0.25
_REPLAY_EVERY_S = 2.0  # how often spilled records are offered to an unreachable store again


# A LoggedPrediction's fields, in order: a tuple of immutable values the collector untracks.
_Entry = tuple[str, int, str | None, float, Role, float, int, tuple[str, ...] | None, bytes, bytes]


@dataclass(frozen=True, slots=True)
class LogCounts:
    """Per model, since the server started: records written to the store, dropped because the
    queue was full, and spilled to the local file while the store was unreachable."""

    logged: Mapping[str, int]
    dropped: Mapping[str, int]
    spilled: Mapping[str, int]


class PredictionLog:
    def __init__(
        self,
        store: EvaluationStore,
        spill: SpillFile,
        *,
        queue_size: int = 100_000,
        batch_size: int = DEFAULT_BATCH,
        flush_s: float = DEFAULT_FLUSH_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._spill = spill
        self._max = queue_size
        self._batch = batch_size
        self._flush_s = flush_s
        self._clock = clock
        # model -> sample rate; read on the loop for each request, replaced whole on change
        self._rates: dict[str, float] = {}
        self._keys: dict[str, frozenset[str]] = {}  # model -> its key inputs (left out)
        self._queue: deque[_Entry] = deque()
        self._dropped: dict[str, int] = {}
        self._logged: dict[str, int] = {}
        self._spilled: dict[str, int] = {}
        self._unavailable_since: float | None = None
        # Whether spilled records may wait (from now, or an earlier run): counting them reads
        # the spill files, so it is asked only while this says so.
        self._spill_waiting = True
        self._writing = 0  # records the writer took from the queue and has not written yet
        self._stopping = threading.Event()
        self._writer = threading.Thread(target=self._run, name="serval-prediction-log", daemon=True)
        self._started = False

    # -- configuration (on the loop, from the models' specs) -------------------------------

    def configure(self, model: str, sample_rate: float | None, keys: Collection[str]) -> None:
        """Log ``sample_rate`` of ``model``'s requests (None or 0: none), leaving out the
        inputs and outputs named in ``keys`` (kept as the rows' keys)."""
        rates = dict(self._rates)
        if sample_rate:
            rates[model] = sample_rate
            self._keys[model] = frozenset(keys)
        else:
            rates.pop(model, None)
        self._rates = rates

    # -- the request path (on the loop) ----------------------------------------------------

    def wants(self, request: InferenceRequest) -> bool:
        """Whether to log ``request``: its model is monitored and the draw says so."""
        rate = self._rates.get(request.model_name)
        if rate is None:
            return False
        return rate >= 1.0 or random.random() < rate  # a sample, not a secret

    def on_prediction(self, event: PredictionEvent) -> None:
        if event.response is None:  # a failed request has no answer to evaluate
            return
        if len(self._queue) >= self._max:
            model = event.id.name
            self._dropped[model] = self._dropped.get(model, 0) + 1
            return
        try:
            entry = self._entry(event)
        except Exception:  # a tensor the log cannot encode: never fail the request
            logger.exception("a prediction of %s could not be logged", event.id)
            return
        self._queue.append(entry)

    # -- the writer thread ------------------------------------------------------------------

    def start(self) -> None:
        if not self._started:
            self._started = True
            self._writer.start()

    def close(self) -> None:
        """Write (or spill) every queued record, then stop the writer. Blocks until done."""
        self._stopping.set()
        if self._started:
            self._writer.join()
        self._drain()  # anything queued after the writer's last look
        self._spill.close()

    @property
    def counts(self) -> LogCounts:
        return LogCounts(dict(self._logged), dict(self._dropped), dict(self._spilled))

    @property
    def queued(self) -> int:
        """Records not in the store or the spill file yet: queued, or in the writer's hands."""
        return len(self._queue) + self._writing

    def health(self) -> str | None:
        """Why logging is degraded (the store is unreachable), for readiness; None when not."""
        since = self._unavailable_since
        if since is None:
            return None
        return (
            f"evaluation store {self._store.location} unreachable for "
            f"{self._clock() - since:.0f} s; logged predictions are spilled to "
            f"{self._spill.folder} and replayed when it is back"
        )

    def _run(self) -> None:
        next_replay = 0.0
        while not self._stopping.is_set():
            if len(self._queue) < self._batch:  # gather a batch, at most flush_s late
                self._stopping.wait(self._flush_s)
            if self._spill_waiting:
                now = time.monotonic()
                if now >= next_replay:
                    next_replay = now + _REPLAY_EVERY_S
                    self._replay()
            self._drain()
        self._drain()

    def _drain(self) -> None:
        while self._queue:
            self._write_batch()

    def _write_batch(self) -> None:
        batch = self._take()
        if not batch:
            self._writing = 0
            return
        try:
            self._store.write_predictions(batch)
        except StoreUnavailableError as exc:
            self._spill_batch(batch, exc)
            return
        except Exception:  # a bug or a database error: keep the records, say why once
            logger.exception("writing %d logged predictions failed; spilled", len(batch))
            self._spill_batch(batch, None)
            return
        finally:
            self._writing = 0
        self._count(self._logged, batch)

    def _take(self) -> list[LoggedPrediction]:
        queue = self._queue
        batch: list[LoggedPrediction] = []
        while queue and len(batch) < self._batch:
            batch.append(LoggedPrediction(*queue.popleft()))
            self._writing += 1
        return batch

    def _entry(self, event: PredictionEvent) -> _Entry:
        """The fields of the ``LoggedPrediction`` of ``event``, its tensors encoded."""
        request = event.request
        response = event.response
        assert response is not None  # on_prediction leaves failures out
        keys = self._keys.get(event.id.name)
        record = request.record
        return (
            event.id.name,
            event.id.version,
            request.id,
            self._clock(),
            "shadow" if record is not None and record.role == "shadow" else "primary",
            event.duration_ns / 1e6,
            request.rows,
            key_texts(request.inputs, keys) if keys else None,
            encode_tensors(request.inputs, keys or ()),
            encode_tensors(response.outputs, keys or ()),
        )

    def _spill_batch(self, batch: list[LoggedPrediction], exc: Exception | None) -> None:
        if self._unavailable_since is None and exc is not None:
            self._unavailable_since = self._clock()
            logger.warning(
                "evaluation store %s is unreachable (%s): spilling logged predictions to %s "
                "until it is back",
                self._store.location,
                exc,
                self._spill.folder,
            )
        try:
            self._spill.append(batch)
            self._spill_waiting = True
        except OSError:
            logger.exception("spilling %d logged predictions failed: they are lost", len(batch))
            self._count(self._dropped, batch)
            return
        self._count(self._spilled, batch)

    def _replay(self) -> None:
        try:
            replayed = self._spill.replay(self._store)
            self._spill_waiting = self._spill.pending() > 0
        except StoreUnavailableError:
            return
        except Exception:
            logger.exception("replaying spilled predictions failed; will try again")
            return
        if self._unavailable_since is not None:
            logger.warning(
                "evaluation store %s is reachable again: %d spilled predictions written",
                self._store.location,
                replayed,
            )
            self._unavailable_since = None

    @staticmethod
    def _count(counts: dict[str, int], batch: list[LoggedPrediction]) -> None:
        for record in batch:
            counts[record.model] = counts.get(record.model, 0) + 1
