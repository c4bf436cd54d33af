"""Bearer-token checks for every REST request (``--auth-tokens``), in front of everything else,
the inference fast path included. Installed only when tokens are configured, so a server
without them pays nothing."""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Receive, Scope, Send

from serval.core.errors import ErrorCode, ServalError
from serval.protocols.rest.connection_guard import HEALTH_PATHS
from serval.protocols.rest.errors import error_response
from serval.protocols.rest.middleware import log_request
from serval.security.access import AccessPolicy, hide_details
from serval.security.tokens import Role

_AUTHORIZATION = b"authorization"
_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_CHALLENGE = {
    ErrorCode.UNAUTHENTICATED: b"Bearer",
    ErrorCode.PERMISSION_DENIED: b'Bearer error="insufficient_scope"',
}


def required_role(method: str, path: str) -> Role | None:
    """The role a request needs; None for a health probe (which ``--auth-open-health`` may
    leave open). Reading needs ``read``, changing the repository or traffic ``admin``, any
    other POST (inference, feedback) ``infer``; unknown paths are treated alike, so that a
    caller without a token learns nothing of which endpoints exist."""
    if path in HEALTH_PATHS:
        return None
    if path.startswith("/v2/repository/"):
        return Role.ADMIN
    if method in _READ_METHODS:
        return Role.READ
    if path.startswith("/v2/models/") and (
        path.endswith("/traffic") or path.endswith("/traffic/rollback")
    ):
        return Role.ADMIN
    return Role.INFER


class AuthMiddleware:
    def __init__(self, app: ASGIApp, policy: AccessPolicy, *, access_log: bool = False) -> None:
        self._app = app
        self._policy = policy
        self._access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        needed = required_role(scope["method"], scope["path"])
        if needed is None and self._policy.open_health:
            hide_details()
            await self._app(scope, receive, send)
            return
        authorization = None
        for key, value in scope["headers"]:
            if key == _AUTHORIZATION:
                authorization = value
                break
        try:
            self._policy.authorize(authorization, needed or Role.READ)
        except ServalError as exc:
            await self._refuse(scope, send, exc)
            return
        await self._app(scope, receive, send)

    async def _refuse(self, scope: Scope, send: Send, error: ServalError) -> None:
        started = time.perf_counter_ns()
        reply = error_response(error)
        headers = list(reply.raw_headers)
        challenge = _CHALLENGE.get(error.code)
        if challenge is not None:
            headers.append((b"www-authenticate", challenge))
        await send({"type": "http.response.start", "status": reply.status_code, "headers": headers})
        await send({"type": "http.response.body", "body": reply.body})
        if self._access_log:
            log_request(scope, reply.status_code, time.perf_counter_ns() - started)
