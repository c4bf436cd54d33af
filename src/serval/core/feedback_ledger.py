"""Which version answered each request id, remembered for a while: what feedback is matched by.

The ledger subscribes to request records (``EventBus.on_request``) and keeps, for each
successful primary answer, its request id -> the version that answered and the rows it had
(ground truth must give one value per row). Failed requests and
shadow copies are left out: a failed request has no answer to give feedback on, and a shadow's
answer was never returned (it shares the primary's id).

Bounded both ways, in slices: answers go into the current slice (a plain dict), which closes
once it holds ``max_ids / 61`` ids or ``ttl_s / 60`` seconds passed; closed slices are dropped
whole, the oldest first, once there are more than 60 of them or their newest answer is older
than ``ttl_s``. So at most ``max_ids`` ids are held, an id is remembered for at least ``ttl_s``
(and at most a sixtieth more) unless about ``max_ids`` later answers pushed it out, and a
request pays one insertion into a small dict, with no timestamp stored per id.

Memory: about 100 bytes per id for the ledger's own entry, plus the id string itself (about
80 bytes for a server-made id, which the ledger keeps alive): about 180 MB at the default of a
million ids, reached only when a million requests arrive within the hour. Time: one insertion
per request, about 0.2 µs (no clock read: the record's end time is used).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from serval.core.lifecycle.states import ServableId
from serval.core.records import RequestRecord

DEFAULT_MAX_IDS = 1_000_000
DEFAULT_TTL_S = 3600.0
_SLICES = 60  # closed slices kept at most; the current one is the 61st
_PRIMARY = "primary"

# The version that answered a request, and the request's rows.
Answer = tuple[ServableId, int]


class AnswerLedger:
    """Used on the event loop only (request records are emitted there)."""

    __slots__ = (
        "_clock",
        "_closed",
        "_current",
        "_current_ends_ns",
        "_max_closed",
        "_slice_ids",
        "_slice_ns",
        "_ttl_ns",
    )

    def __init__(
        self,
        max_ids: int = DEFAULT_MAX_IDS,
        ttl_s: float = DEFAULT_TTL_S,
        clock: Callable[[], int] = time.perf_counter_ns,
    ) -> None:
        """``clock``: the clock of ``RequestRecord.finished_ns`` (tests pass their own)."""
        if max_ids < 1:
            raise ValueError(f"max_ids must be at least 1, received {max_ids}")
        if ttl_s <= 0:
            raise ValueError(f"ttl_s must be positive, received {ttl_s}")
        self._clock = clock
        self._ttl_ns = int(ttl_s * 1e9)
        self._slice_ns = max(1, self._ttl_ns // _SLICES)
        self._max_closed = min(_SLICES, max_ids - 1)
        self._slice_ids = max_ids // (self._max_closed + 1)
        # request id -> the version that answered it; the current slice and the closed ones,
        # oldest first, each with its newest answer's time (perf_counter_ns)
        self._current: dict[str, Answer] = {}
        self._current_ends_ns = clock() + self._slice_ns
        self._closed: deque[tuple[int, dict[str, Answer]]] = deque()

    def __len__(self) -> int:
        return len(self._current) + sum(len(answers) for _, answers in self._closed)

    def on_request(self, record: RequestRecord) -> None:
        """Remember who answered ``record`` (a successful primary answer with an id)."""
        servable = record.servable
        request_id = record.request_id
        if servable is None or request_id is None or record.error is not None:
            return
        if record.role != _PRIMARY:
            return
        answered_ns = record.finished_ns
        if len(self._current) >= self._slice_ids or answered_ns >= self._current_ends_ns:
            self._close_current(answered_ns)
        self._current[request_id] = (servable, record.rows)

    def answered(self, model: str, request_id: str) -> Answer | None:
        """The version of ``model`` that answered ``request_id`` and the request's rows; None
        when the id is unknown, forgotten, or was answered by another model."""
        now = self._clock()
        if now >= self._current_ends_ns:
            self._close_current(self._current_ends_ns)
        self._expire(now)
        answer = self._current.get(request_id)
        if answer is None:
            for _, answers in reversed(self._closed):  # the newest answer first
                answer = answers.get(request_id)
                if answer is not None:
                    break
        if answer is None or answer[0].name != model:
            return None
        return answer

    def _close_current(self, now_ns: int) -> None:
        """Close the current slice (its newest answer is no later than ``now_ns``)."""
        if self._current:
            self._closed.append((now_ns, self._current))
            self._current = {}
            if len(self._closed) > self._max_closed:
                self._closed.popleft()
        self._current_ends_ns = now_ns + self._slice_ns
        self._expire(now_ns)

    def _expire(self, now_ns: int) -> None:
        closed = self._closed
        oldest = now_ns - self._ttl_ns
        while closed and closed[0][0] < oldest:
            closed.popleft()
