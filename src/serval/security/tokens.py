"""The token file (``--auth-tokens``): one ``ROLE TOKEN`` pair per line, ``#`` comments.

Roles are cumulative: ``admin`` may do all that ``infer`` may, and ``infer`` all that ``read``
may. Tokens are kept only as SHA-256 digests and compared in constant time (see
``TokenTable.role_of``); neither a token nor a digest is ever logged or put in a message.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path


class Role(IntEnum):
    """What a caller may do; a higher role includes the lower ones."""

    READ = 1  # health, metadata, statistics, metrics
    INFER = 2  # inference (and feedback)
    ADMIN = 3  # load, unload, repository index (and traffic changes)

    @property
    def label(self) -> str:
        return self.name.lower()


class TokenFileError(ValueError):
    """The token file cannot be used; the message names the file and line, never a token."""


@dataclass(frozen=True, slots=True)
class TokenEntry:
    """One token of the file: its digest, its role, and its position (the rate limiter's
    key, so that limits are kept per token without holding the token)."""

    digest: bytes
    role: Role
    index: int


_DIGEST_SIZE = hashlib.sha256().digest_size
_NO_MATCH = TokenEntry(b"\0" * _DIGEST_SIZE, Role.READ, -1)
_MIN_TOKEN_LENGTH = 16


def _digest(token: bytes) -> bytes:
    return hashlib.sha256(token).digest()


class TokenTable:
    """The tokens of a file, each with its role."""

    def __init__(self, entries: list[tuple[Role, bytes]]) -> None:
        if not entries:
            raise TokenFileError("the token file holds no tokens")
        self._entries = tuple(
            TokenEntry(_digest(token), role, index) for index, (role, token) in enumerate(entries)
        )

    def __len__(self) -> int:
        return len(self._entries)

    def find(self, token: bytes) -> TokenEntry | None:
        """The entry of ``token``, or None. Compares the token's digest with every entry's,
        each in constant time and without stopping at a match, so the time taken tells
        neither which token matched nor how much of one did."""
        presented = _digest(token)
        found = _NO_MATCH
        for entry in self._entries:
            if hmac.compare_digest(presented, entry.digest):
                found = entry
        return found if found.index >= 0 else None

    @classmethod
    def from_file(cls, path: Path) -> TokenTable:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise TokenFileError(f"cannot read the token file {path}: {exc}") from exc
        return cls(parse_token_lines(text, str(path)))


def parse_token_lines(text: str, source: str) -> list[tuple[Role, bytes]]:
    """``ROLE TOKEN`` pairs of ``text``; a bad line is a ``TokenFileError`` naming it."""
    entries: list[tuple[Role, bytes]] = []
    seen: set[bytes] = set()
    roles = {role.label: role for role in Role}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        fields = line.split()
        where = f"{source} line {number}"
        if len(fields) != 2:
            raise TokenFileError(f"{where}: expected 'ROLE TOKEN', found {len(fields)} fields")
        role_name, token = fields
        role = roles.get(role_name.lower())
        if role is None:
            raise TokenFileError(
                f"{where}: unknown role {role_name!r} (expected one of {', '.join(roles)})"
            )
        if len(token) < _MIN_TOKEN_LENGTH:
            raise TokenFileError(
                f"{where}: the token is shorter than {_MIN_TOKEN_LENGTH} characters"
            )
        encoded = token.encode("utf-8")
        if encoded in seen:
            raise TokenFileError(f"{where}: the token is listed twice")
        seen.add(encoded)
        entries.append((role, encoded))
    return entries
