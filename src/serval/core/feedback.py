"""Feedback on answered requests: a reward (bandits) or the ground truth (evaluation), joined
to the version that answered by the request's id.

The feedback API hands each item to the ``EventBus`` as a ``Feedback``; bandit policies and the
evaluation subscribe (``EventBus.on_feedback``). The core never imports them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

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
    wall clock (``time.time()``) when the item arrived."""

    model: str
    request_id: str
    servable: ServableId | None
    received: float
    reward: float | None = None
    ground_truth: JsonValue = None

    @property
    def matched(self) -> bool:
        return self.servable is not None


@dataclass(frozen=True, slots=True)
class FeedbackItem:
    """One item a client sent: a ``reward`` (a finite number), a ``ground_truth`` (any JSON
    value but null), or both, on the answer to ``request_id``."""

    request_id: str
    reward: float | None = None
    ground_truth: JsonValue = None

    def __post_init__(self) -> None:
        if not self.request_id:
            raise ValueError("a feedback item needs the request id")
        if self.reward is None and self.ground_truth is None:
            raise ValueError("a feedback item needs a reward or a ground truth")
        if self.reward is not None and not math.isfinite(self.reward):
            raise ValueError(f"a reward must be a finite number, received {self.reward!r}")
