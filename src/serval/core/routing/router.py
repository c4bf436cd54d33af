"""The router: which policy chooses for a request."""

from __future__ import annotations

from serval.core.lifecycle.snapshot import VersionSnapshot
from serval.core.routing.policy import (
    EXPLICIT,
    LATEST,
    Choice,
    LabelledVersion,
    TrafficPolicy,
)
from serval.core.types import InferenceRequest


class Router:
    """A request that names a version or a label gets it, whatever the model's policy (a
    client pinning a version bypasses a rollout); any other request goes to its model's
    policy, or to ``default`` (the highest available version) when the model has none."""

    __slots__ = ("_default", "_policies", "sticky_headers")

    def __init__(self, default: TrafficPolicy = LATEST) -> None:
        self._default = default
        self._policies: dict[str, TrafficPolicy] = {}
        # Model -> the (lower-case) header whose value its policy's sticky key is: adapters
        # put that header's value on ``InferenceRequest.routing_key``. Empty when no policy
        # asks, so adapters pay one truth test.
        self.sticky_headers: dict[str, str] = {}

    def set_policy(
        self, model: str, policy: TrafficPolicy | None, *, sticky_header: str | None = None
    ) -> None:
        """Route ``model`` by ``policy`` from now on (None: back to the default);
        ``sticky_header``: the header holding the policy's sticky key, if it has one."""
        if policy is None:
            self._policies.pop(model, None)
        else:
            self._policies[model] = policy
        if sticky_header is None:
            self.sticky_headers.pop(model, None)
        else:
            self.sticky_headers[model] = sticky_header.lower()

    def choose(
        self, request: InferenceRequest, snapshot: VersionSnapshot, label: str | None = None
    ) -> Choice:
        if label is not None:
            return LabelledVersion(label).choose(request, snapshot)
        if request.model_version:
            return EXPLICIT.choose(request, snapshot)
        policy = self._policies.get(snapshot.name) if self._policies else None
        return (self._default if policy is None else policy).choose(request, snapshot)
