"""Precomputed predictions: each row's outputs stored under its key, written by batch jobs
(``serval batch --to``) and read by the server (``serval.storage.precomputed_readers``: many
keys per lookup). One format for every store, so a writer and a reader always agree.

The answer of one key is a compact binary record (never pickle: a store's contents must not
be able to run code in the server that reads it). All numbers are little-endian::

    b"SVP2"  u16 len, model (UTF-8)  u32 version  f64 written_at (unix seconds)
    then the outputs, as ``serval.storage.tensor_record`` writes a body:
        u16 outputs
        per output: u16 len, name  u8 len, datatype  u8 rank, u32 dims...  then its values:
            numbers: the raw little-endian values; BYTES: per value u32 len, bytes

Records of the first version, ``b"SVP1"``, are the same without ``written_at``; they are
still read (their age unknown: never stale).

A key is the text of the key column's value (``key_text``, from ``core.composition.stores``;
several key columns: their texts joined by U+001F). Stores:

- Redis: one string per key, ``{prefix}precomputed:{model}:{key}``; writes are pipelined.
- SQLite (``sqlite:///relative.db``, ``sqlite:////absolute.db``): table
  ``precomputed (model, key, answer)``, primary key ``(model, key)``.
"""

from __future__ import annotations

import sqlite3
import struct
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import numpy as np

from serval.core.composition.stores import KEY_SEPARATOR, PrecomputedAnswer, precomputed_key
from serval.core.errors import InvalidInputError
from serval.core.tensors.datatypes import DataType
from serval.storage.tensor_record import read_body, read_text, write_body, write_text

MAGIC = b"SVP2"
MAGIC_V1 = b"SVP1"
key_text = precomputed_key  # the writers' name for it
__all__ = ["KEY_SEPARATOR", "PrecomputedAnswer", "key_text"]
_U32 = struct.Struct("<I")
_F64 = struct.Struct("<d")

Array = np.ndarray[Any, Any]


def encode_answer(
    model: str, version: int, outputs: Mapping[str, Array], written_at: float | None = None
) -> bytes:
    """The record of one answer; ``outputs`` are one row's values (numpy arrays; text as an
    object array of str or bytes); ``written_at`` is when (``time.time()``; default now)."""
    when = time.time() if written_at is None else written_at
    parts = [MAGIC, write_text(model), _U32.pack(version), _F64.pack(when)]
    write_body(parts, ((name, _datatype(value), value) for name, value in outputs.items()))
    return b"".join(parts)


def _datatype(value: object) -> DataType:
    return DataType.from_numpy(np.asarray(value).dtype)


def decode_answer(record: bytes) -> PrecomputedAnswer:
    """The answer ``encode_answer`` wrote (SVP2, or SVP1 with ``written_at`` None); raises
    ``ValueError`` for a record it did not."""
    if record.startswith(MAGIC):
        timed = True
    elif record.startswith(MAGIC_V1):
        timed = False
    else:
        raise ValueError("not a precomputed answer record (no SVP1 or SVP2 header)")
    view = memoryview(record)
    try:
        model, at = read_text(view, len(MAGIC))
        (version,) = _U32.unpack_from(view, at)
        at += _U32.size
        written_at: float | None = None
        if timed:
            (written_at,) = _F64.unpack_from(view, at)
            at += _F64.size
    except struct.error as exc:
        raise ValueError(f"truncated precomputed answer record ({exc})") from exc
    named, at = read_body(view, at)
    if at != len(view):
        raise ValueError(f"precomputed answer record: {len(view) - at} bytes after its outputs")
    outputs = {name: values for name, _, values in named}
    return PrecomputedAnswer(model, version, outputs, written_at)


class PrecomputedStore(Protocol):
    """Where precomputed answers live: ``write`` (many, batched) and ``get`` (one lookup)."""

    def write(self, model: str, answers: Iterable[tuple[str, bytes]]) -> int: ...

    def get(self, model: str, key: str) -> PrecomputedAnswer | None: ...

    def close(self) -> None: ...


class RedisPrecomputedStore:
    """One Redis string per key under ``prefix``; ``write`` sends one pipeline per call."""

    def __init__(self, url: str, prefix: str = "serval:") -> None:
        import redis  # noqa: PLC0415 - the redis extra

        self._client = redis.Redis.from_url(url)
        self._prefix = prefix

    def key(self, model: str, key: str) -> str:
        return f"{self._prefix}precomputed:{model}:{key}"

    def write(self, model: str, answers: Iterable[tuple[str, bytes]]) -> int:
        pipe = self._client.pipeline(transaction=False)
        count = 0
        for key, record in answers:
            pipe.set(self.key(model, key), record)
            count += 1
        pipe.execute()
        return count

    def get(self, model: str, key: str) -> PrecomputedAnswer | None:
        record = self._client.get(self.key(model, key))
        return None if record is None else decode_answer(bytes(record))  # type: ignore[arg-type]

    def close(self) -> None:
        self._client.close()


class SqlitePrecomputedStore:
    """Table ``precomputed`` of a SQLite file (WAL, so the server reads while a job writes)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS precomputed (model TEXT NOT NULL, key TEXT NOT NULL, "
            "answer BLOB NOT NULL, PRIMARY KEY (model, key)) WITHOUT ROWID"
        )
        self._db.commit()

    def write(self, model: str, answers: Iterable[tuple[str, bytes]]) -> int:
        rows = [(model, key, record) for key, record in answers]
        with self._db:
            self._db.executemany(
                "INSERT OR REPLACE INTO precomputed (model, key, answer) VALUES (?, ?, ?)", rows
            )
        return len(rows)

    def get(self, model: str, key: str) -> PrecomputedAnswer | None:
        row = self._db.execute(
            "SELECT answer FROM precomputed WHERE model = ? AND key = ?", (model, key)
        ).fetchone()
        return None if row is None else decode_answer(row[0])

    def close(self) -> None:
        self._db.close()


def open_precomputed_store(url: str, prefix: str = "serval:") -> PrecomputedStore:
    """The store of ``redis://host:port/db`` (``rediss://`` too) or ``sqlite:///path``."""
    scheme = urlsplit(url).scheme
    if scheme in ("redis", "rediss", "unix"):
        return RedisPrecomputedStore(url, prefix)
    if scheme == "sqlite":
        # As SQLAlchemy: sqlite:///relative/file.db, sqlite:////absolute/file.db.
        path = url[len("sqlite:///") :] if url.startswith("sqlite:///") else ""
        if not path:
            raise InvalidInputError(
                f"--to {url}: expected sqlite:///relative/file.db or sqlite:////absolute/file.db"
            )
        return SqlitePrecomputedStore(Path(path))
    raise InvalidInputError(
        f"--to {url}: unknown store {scheme!r}; expected redis://HOST:PORT/DB or sqlite:///PATH"
    )
