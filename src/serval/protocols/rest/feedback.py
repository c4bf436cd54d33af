"""``POST /v2/models/{model}/feedback``: rewards and ground truths on answered requests.

The body is one item, ``{"id": "<request id>", "reward": 1.0}``, or a list of them,
``{"items": [{"id": ..., "reward": ..., "ground_truth": ...}, ...]}`` (at most
``MAX_FEEDBACK_ITEMS``). Each item names the request id its answer carried (the V2 ``id``,
the ``x-request-id`` header) and a ``reward`` (a finite number), a ``ground_truth`` (any JSON
value but null), or both; or, for keyed predictions, a ``key`` (a string, an integer, or a
list for a key of several values) and the ``ground_truth`` of that key's row. The answer is
``{"accepted": n, "matched": k}``: ``matched`` counts
the items whose id serval still remembers, with the version that answered it. A malformed body
is a 400 that names the field (``items[3].reward: must be a number``); an unknown model a 404;
an unknown id is no error, only unmatched.
"""

from __future__ import annotations

import math
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from serval.core.dataplane import DataPlane
from serval.core.errors import InvalidInputError, PayloadTooLargeError
from serval.core.feedback import FeedbackItem, JsonValue, key_text
from serval.protocols.rest.body import parse_json_object, read_body

MAX_FEEDBACK_ITEMS = 10_000
FEEDBACK_PATH = "/v2/models/{model}/feedback"
_ITEM_FIELDS = ("id", "key", "reward", "ground_truth")


class FeedbackRoute:
    def __init__(self, dataplane: DataPlane, max_request_bytes: int) -> None:
        self._dataplane = dataplane
        self._limit = max_request_bytes

    def routes(self) -> list[Route]:
        return [Route(FEEDBACK_PATH, self.feedback, methods=["POST"])]

    async def feedback(self, request: Request) -> Response:
        model = request.path_params["model"]
        self._dataplane.model_status(model)  # an unknown model is a 404 whatever the body
        items = parse_feedback(parse_json_object(await read_body(request, self._limit)))
        accepted, matched = await self._dataplane.feedback(model, items)
        body = orjson.dumps({"accepted": accepted, "matched": matched})
        return Response(body, media_type="application/json")


def parse_feedback(doc: dict[str, Any]) -> list[FeedbackItem]:
    """The items of a feedback body; ``InvalidInputError`` naming the field otherwise."""
    if "items" not in doc:
        return [_item(doc, "")]
    if len(doc) != 1:
        extra = sorted(key for key in doc if key != "items")
        raise InvalidInputError(
            f"{extra[0]}: not allowed beside 'items' (send one item, or a list of items)"
        )
    items = doc["items"]
    if not isinstance(items, list) or not items:
        raise InvalidInputError("items: must be a non-empty list of feedback items")
    if len(items) > MAX_FEEDBACK_ITEMS:
        raise PayloadTooLargeError(
            f"items: at most {MAX_FEEDBACK_ITEMS} items per request, received {len(items)}"
        )
    return [_item(item, f"items[{index}].") for index, item in enumerate(items)]


def _item(item: Any, where: str) -> FeedbackItem:
    if not isinstance(item, dict):
        raise InvalidInputError(f"{where.rstrip('.') or 'body'}: must be an object")
    unknown = sorted(key for key in item if key not in _ITEM_FIELDS)
    if unknown:
        raise InvalidInputError(
            f"{where}{unknown[0]}: unknown field; a feedback item has id or key, reward, "
            "ground_truth"
        )
    request_id = item.get("id")
    key = item.get("key")
    if key is not None:
        if request_id is not None:
            raise InvalidInputError(f"{where}key: send id or key, not both")
        if isinstance(key, bool | float | dict) or key in ("", []):
            raise InvalidInputError(
                f"{where}key: must be the row's key (a string, an integer or a list of them)"
            )
        if "reward" in item:
            raise InvalidInputError(f"{where}reward: a reward is sent by request id, not by key")
        if item.get("ground_truth") is None:
            raise InvalidInputError(f"{where}ground_truth: required with key")
        return FeedbackItem(None, None, item["ground_truth"], key_text(key))
    if not isinstance(request_id, str) or not request_id:
        raise InvalidInputError(
            f"{where}id: must be the request id, a non-empty string (or send key)"
        )
    reward = item.get("reward")
    if reward is not None:
        if isinstance(reward, bool) or not isinstance(reward, int | float):
            raise InvalidInputError(f"{where}reward: must be a number, received {reward!r}")
        if not math.isfinite(reward):
            raise InvalidInputError(f"{where}reward: must be a finite number")
    ground_truth: JsonValue = item.get("ground_truth")
    if reward is None and ground_truth is None:
        raise InvalidInputError(f"{where}reward: a reward or a ground_truth is required")
    return FeedbackItem(request_id, None if reward is None else float(reward), ground_truth)
