"""Which version answered each request id, remembered for a while: what feedback is matched by.

The ledger subscribes to request records (``EventBus.on_request``) and keeps, for each
successful primary answer, its request id -> the version that answered. Failed requests and
shadow copies are left out: a failed request has no answer to give feedback on, and a shadow's
answer was never returned (it shares the primary's id). Bounded both ways: at most
``max_ids`` ids (the oldest go first) and none older than ``ttl_s`` seconds.

Memory: about 250 bytes per id for the ledger's own entry (an ordered-dict node, the tuple,
the timestamp), plus the id string itself (about 85 bytes for a server-made id), which the
ledger keeps alive: about 330 MB at the default million ids, reached only once a million
requests arrive within the hour.
"""

from __future__ import annotations

import time
from collections import OrderedDict

from serval.core.lifecycle.states import ServableId
from serval.core.records import RequestRecord

DEFAULT_MAX_IDS = 1_000_000
DEFAULT_TTL_S = 3600.0
# Expired ids are pruned from the oldest end every this many answers (and at each lookup):
# the common request pays an insertion only.
_PRUNE_EVERY = 4096
_PRIMARY = "primary"


class AnswerLedger:
    """Used on the event loop only (request records are emitted there)."""

    __slots__ = ("_answers", "_max_ids", "_since_prune", "_ttl_ns")

    def __init__(self, max_ids: int = DEFAULT_MAX_IDS, ttl_s: float = DEFAULT_TTL_S) -> None:
        if max_ids < 1:
            raise ValueError(f"max_ids must be at least 1, received {max_ids}")
        if ttl_s <= 0:
            raise ValueError(f"ttl_s must be positive, received {ttl_s}")
        self._max_ids = max_ids
        self._ttl_ns = int(ttl_s * 1e9)
        # request id -> (the version that answered, when: perf_counter_ns), oldest first
        self._answers: OrderedDict[str, tuple[ServableId, int]] = OrderedDict()
        self._since_prune = 0

    def __len__(self) -> int:
        return len(self._answers)

    def on_request(self, record: RequestRecord) -> None:
        """Remember who answered ``record`` (a successful primary answer with an id)."""
        servable = record.servable
        request_id = record.request_id
        if servable is None or request_id is None or record.error is not None:
            return
        if record.role != _PRIMARY:
            return
        answers = self._answers
        if request_id in answers:  # an id used again: it moves to the young end
            answers.move_to_end(request_id)
        answers[request_id] = (servable, record.finished_ns or time.perf_counter_ns())
        if len(answers) > self._max_ids:
            answers.popitem(last=False)
        self._since_prune += 1
        if self._since_prune >= _PRUNE_EVERY:
            self._prune(time.perf_counter_ns())

    def answered(self, model: str, request_id: str) -> ServableId | None:
        """The version of ``model`` that answered ``request_id``; None when the id is unknown,
        forgotten, or was answered by another model."""
        self._prune(time.perf_counter_ns())
        entry = self._answers.get(request_id)
        if entry is None or entry[0].name != model:
            return None
        return entry[0]

    def _prune(self, now_ns: int) -> None:
        self._since_prune = 0
        answers = self._answers
        oldest = now_ns - self._ttl_ns
        while answers:
            request_id, (_, answered_ns) = next(iter(answers.items()))
            if answered_ns >= oldest:
                return
            del answers[request_id]
