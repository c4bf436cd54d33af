"""The access decision every adapter makes: which role a request needs, whether its bearer
token grants it, whether the token is within its rate limit, and how much an error may say.

Adapters read the credential (REST ``Authorization`` header, gRPC ``authorization`` metadata)
and name the role an operation needs; ``AccessPolicy.authorize`` decides. A refusal says what
is missing (a token, or which role), never which tokens exist.
"""

from __future__ import annotations

import logging
from contextvars import ContextVar
from dataclasses import dataclass

from serval.core.errors import (
    ErrorCode,
    OverloadedError,
    PermissionDeniedError,
    ServalError,
    UnauthenticatedError,
)
from serval.observability.logging import current_request
from serval.security.rate_limit import RateLimiter
from serval.security.tokens import Role, TokenTable

logger = logging.getLogger("serval.security")

_BEARER = b"bearer "

# Whether error details (exception texts, paths, load errors) may go to the caller of the
# request being served: always without authentication; only to admin tokens with it.
_details_visible: ContextVar[bool] = ContextVar("serval_details_visible", default=True)


@dataclass(frozen=True)
class AccessPolicy:
    tokens: TokenTable
    open_health: bool = True
    rate_limiter: RateLimiter | None = None

    def authorize(self, authorization: bytes | None, needed: Role) -> Role:
        """The caller's role when it is at least ``needed``; else raises
        ``UnauthenticatedError`` (no or unknown token), ``PermissionDeniedError`` (role too
        low) or ``OverloadedError`` (over the token's rate limit, with ``retry_after_s``)."""
        if authorization is None:
            raise UnauthenticatedError(
                "authentication required: send 'Authorization: Bearer <token>'"
            )
        if authorization[:7].lower() != _BEARER:
            raise UnauthenticatedError(
                "authentication required: the Authorization header must be 'Bearer <token>'"
            )
        entry = self.tokens.find(authorization[7:].strip())
        if entry is None:
            raise UnauthenticatedError("authentication failed: the token is not valid")
        _details_visible.set(entry.role >= Role.ADMIN)
        if entry.role < needed:
            raise PermissionDeniedError(
                f"permission denied: this needs the {needed.label!r} role; the token has "
                f"{entry.role.label!r}"
            )
        if self.rate_limiter is not None:
            wait_s = self.rate_limiter.wait_s(entry.index)
            if wait_s > 0:
                raise OverloadedError(
                    "rate limit exceeded for this token; retry later", retry_after_s=wait_s
                )
        return entry.role


def hide_details() -> None:
    """The request in progress shows no error details to its caller: an open health probe,
    which carries no token."""
    _details_visible.set(False)


def details_visible() -> bool:
    """Whether the caller of the request in progress may see error details."""
    return _details_visible.get()


def public_message(message: str, summary: str) -> str:
    """``message`` for a caller allowed to see details; else ``summary`` with the request id
    (the full message is in the server's log under that id)."""
    if _details_visible.get():
        return message
    context = current_request()
    if context is None:
        return f"{summary}; the details are in the server log"
    return f"{summary}; the details are in the server log (request id {context.request_id})"


# Codes whose messages may carry model exception texts, load errors or repository paths.
_SUMMARIES = {
    ErrorCode.INTERNAL: "internal error",
    ErrorCode.UNAVAILABLE: "not available now",
}


def client_message(error: ServalError) -> str:
    """The message of ``error`` as its caller may see it; a hidden one is logged in full."""
    summary = _SUMMARIES.get(error.code)
    if summary is None or _details_visible.get():
        return error.message
    logger.warning("%s (not shown to the caller)", error.message)
    return public_message(error.message, summary)
