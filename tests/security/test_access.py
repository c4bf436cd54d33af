"""Unit tests of serval.security: the token file, the access decision, rate limits."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from serval.core.errors import (
    ModelExecutionError,
    OverloadedError,
    PermissionDeniedError,
    UnauthenticatedError,
)
from serval.protocols.rest.auth import required_role
from serval.security import access
from serval.security.access import AccessPolicy, client_message, details_visible
from serval.security.rate_limit import RateLimiter
from serval.security.tokens import Role, TokenFileError, TokenTable, parse_token_lines

TOKEN_A = "a" * 20
TOKEN_B = "b" * 20


@pytest.fixture(autouse=True)
def _restore_visibility() -> Iterator[None]:
    # authorize() sets a context variable; leave it as other tests expect it.
    token = access._details_visible.set(True)
    yield
    access._details_visible.reset(token)


def table() -> TokenTable:
    return TokenTable(parse_token_lines(f"read {TOKEN_A}\nadmin {TOKEN_B}\n", "tokens"))


def test_token_file_lines_comments_and_roles(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text(f"# who\n\nREAD {TOKEN_A}  # a reader\ninfer {TOKEN_B}\n", encoding="utf-8")
    tokens = TokenTable.from_file(path)
    assert len(tokens) == 2
    found = tokens.find(TOKEN_B.encode())
    assert found is not None and found.role is Role.INFER
    assert tokens.find(b"c" * 20) is None
    assert tokens.find(TOKEN_A.encode()[:-1]) is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("read\n", "line 1: expected 'ROLE TOKEN', found 1 fields"),
        (f"read {TOKEN_A} extra\n", "line 1: expected 'ROLE TOKEN', found 3 fields"),
        (f"# c\nowner {TOKEN_A}\n", "line 2: unknown role 'owner'"),
        ("read short\n", "line 1: the token is shorter than 16 characters"),
        (f"read {TOKEN_A}\nadmin {TOKEN_A}\n", "line 2: the token is listed twice"),
        ("# nothing\n", "holds no tokens"),
    ],
)
def test_bad_token_files_name_the_line_never_the_token(text: str, message: str) -> None:
    with pytest.raises(TokenFileError) as caught:
        TokenTable(parse_token_lines(text, "tokens"))
    assert message in str(caught.value)
    assert TOKEN_A not in str(caught.value)


def test_roles_are_cumulative() -> None:
    policy = AccessPolicy(table())
    reader, admin = f"Bearer {TOKEN_A}".encode(), f"bearer {TOKEN_B}".encode()
    assert policy.authorize(reader, Role.READ) is Role.READ
    assert not details_visible()
    with pytest.raises(PermissionDeniedError, match="needs the 'infer' role"):
        policy.authorize(reader, Role.INFER)
    for needed in Role:
        assert policy.authorize(admin, needed) is Role.ADMIN
    assert details_visible()


@pytest.mark.parametrize("header", [None, b"Basic abc", b"Bearer ", b"Bearer " + b"z" * 20])
def test_unknown_credentials_are_unauthenticated(header: bytes | None) -> None:
    with pytest.raises(UnauthenticatedError) as caught:
        AccessPolicy(table()).authorize(header, Role.READ)
    assert TOKEN_A not in caught.value.message and TOKEN_B not in caught.value.message


def test_rate_limits_are_per_token_with_a_wait() -> None:
    now = [0.0]
    limiter = RateLimiter(2.0, 2, clock=lambda: now[0])
    policy = AccessPolicy(table(), rate_limiter=limiter)
    reader = f"Bearer {TOKEN_A}".encode()
    policy.authorize(reader, Role.READ)
    policy.authorize(reader, Role.READ)
    with pytest.raises(OverloadedError) as caught:
        policy.authorize(reader, Role.READ)
    assert caught.value.retry_after_s == pytest.approx(0.5)
    policy.authorize(f"Bearer {TOKEN_B}".encode(), Role.READ)  # another token's own budget
    now[0] = 0.5
    policy.authorize(reader, Role.READ)


def test_hidden_messages_carry_no_detail() -> None:
    error = UnauthenticatedError("x")
    assert client_message(error) == "x"  # not a hidden code
    with pytest.raises(PermissionDeniedError):
        AccessPolicy(table()).authorize(f"Bearer {TOKEN_A}".encode(), Role.ADMIN)
    hidden = client_message(ModelExecutionError("boom at /secret/path"))
    assert "/secret/path" not in hidden and hidden.startswith("internal error")


@pytest.mark.parametrize(
    ("method", "path", "role"),
    [
        ("GET", "/v2/health/live", None),
        ("GET", "/v2/health/ready", None),
        ("GET", "/v2/models/m", Role.READ),
        ("GET", "/metrics", Role.READ),
        ("POST", "/v2/models/m/infer", Role.INFER),
        ("POST", "/v1/models/m:predict", Role.INFER),
        ("POST", "/v2/models/m/feedback", Role.INFER),
        ("POST", "/v2/repository/index", Role.ADMIN),
        ("POST", "/v2/repository/models/m/load", Role.ADMIN),
        ("PUT", "/v2/models/m/traffic", Role.ADMIN),
        ("POST", "/v2/models/m/traffic/rollback", Role.ADMIN),
        ("GET", "/v2/models/m/traffic", Role.READ),
    ],
)
def test_rest_roles(method: str, path: str, role: Role | None) -> None:
    assert required_role(method, path) is role
