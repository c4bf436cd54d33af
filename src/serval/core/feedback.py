"""Feedback on answered requests: a reward (bandits) or the ground truth (evaluation), joined
to the version that answered by the request's id.

The feedback API hands each item to the ``EventBus`` as a ``Feedback``; bandit policies and the
evaluation subscribe (``EventBus.on_feedback``). The core never imports them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import orjson

if TYPE_CHECKING:
    from serval.core.lifecycle.states import ServableId

# A JSON value as the client sent it: the ground truth of one request (a label, a number, a
# list of either for a request of several rows).
JsonValue = str | int | float | bool | None | list["JsonValue"] | dict[str, "JsonValue"]


@dataclass(frozen=True, slots=True)
class Feedback:
    """One item of feedback on one answered request of ``model``.

    ``servable`` is the version that answered ``request_id``, when serval still remembers the
    id (None: unmatched; a subscriber that needs the version ignores it). ``received`` is the
    wall clock (``time.time()``) when the item arrived. An item sent by ``key`` (keyed
    predictions: ground truth for the rows of a key) has no request id and no servable."""

    model: str
    request_id: str | None
    servable: ServableId | None
    received: float
    reward: float | None = None
    ground_truth: JsonValue = None
    key: str | None = None  # key_text of the key it was sent by
    rows: int = 0  # the matched request's rows (0: unknown)

    @property
    def matched(self) -> bool:
        return self.servable is not None


@dataclass(frozen=True, slots=True)
class FeedbackItem:
    """One item a client sent: a ``reward`` (a finite number), a ``ground_truth`` (any JSON
    value but null), or both, on the answer to ``request_id``; or a ``ground_truth`` for the
    rows of ``key`` (keyed predictions, ``key_text``)."""

    request_id: str | None
    reward: float | None = None
    ground_truth: JsonValue = None
    key: str | None = None

    def __post_init__(self) -> None:
        if not self.request_id and self.key is None:
            raise ValueError("a feedback item needs the request id or a key")
        if self.request_id and self.key is not None:
            raise ValueError("a feedback item names the request id or a key, not both")
        if self.key is not None and self.reward is not None:
            raise ValueError("a reward is given on a request id (a key names no answer)")
        if self.reward is None and self.ground_truth is None:
            raise ValueError("a feedback item needs a reward or a ground truth")
        if self.reward is not None and not math.isfinite(self.reward):
            raise ValueError(f"a reward must be a finite number, received {self.reward!r}")


def key_text(value: JsonValue) -> str:
    """A key as the prediction log and the feedback API both write it: a string as is, an
    integer in decimal, anything else (a key of several values, several keys) as compact JSON.
    So a row logged with key ``"user-7"`` or ``7`` is found by feedback sent with that key."""
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return orjson.dumps(value).decode()


class GroundTruthRecorder(Protocol):
    """Keeps the ground truth of the models it evaluates (``serval.evaluation``), durably,
    before the feedback API answers. The core calls it; it never imports it."""

    def check(self, feedback: Feedback) -> None:
        """Raise ``InvalidInputError`` naming the request id (or key) when ``feedback``'s
        ground truth cannot label its prediction (wrong type, wrong number of rows); nothing
        for a model it does not evaluate."""
        ...

    async def record(self, model: str, feedback: Sequence[Feedback]) -> int | None:
        """Store the ground truths of ``feedback`` (items of ``model``) durably; how many
        joined a logged prediction. None when ``model`` is not evaluated (nothing stored)."""
        ...
