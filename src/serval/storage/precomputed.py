"""Precomputed predictions: each row's outputs stored under its key, written by batch jobs
(``serval batch --to``) and read by the server (one lookup per key). One format for every
store, so a writer and a reader always agree.

The answer of one key is a compact binary record (never pickle: a store's contents must not
be able to run code in the server that reads them)::

    b"SVP1"  u16 len, model (UTF-8)  u32 version  u16 outputs
    per output: u16 len, name  u8 len, datatype  u8 rank, u32 dims...  then its values:
        numbers: the raw little-endian values; BYTES: per value u32 len, bytes

A key is the text of the key column's value (``key_text``, from ``core.composition.stores``;
several key columns: their texts joined by U+001F). Stores:

- Redis: one string per key, ``{prefix}precomputed:{model}:{key}``; writes are pipelined.
- SQLite (``sqlite:///relative.db``, ``sqlite:////absolute.db``): table
  ``precomputed (model, key, answer)``, primary key ``(model, key)``.
"""

from __future__ import annotations

import sqlite3
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import numpy as np

from serval.core.composition.stores import KEY_SEPARATOR, precomputed_key
from serval.core.errors import InvalidInputError
from serval.core.tensors.datatypes import DataType

MAGIC = b"SVP1"
key_text = precomputed_key  # the writers' name for it
__all__ = ["KEY_SEPARATOR", "key_text"]
_HEAD = struct.Struct("<H")
_U32 = struct.Struct("<I")

Array = np.ndarray[Any, Any]


@dataclass(frozen=True, slots=True)
class PrecomputedAnswer:
    """One key's answer: the model and version that computed it, and its outputs (one row
    each, without the batch dimension)."""

    model: str
    version: int
    outputs: dict[str, Array]


def _text(value: str) -> bytes:
    data = value.encode()
    return _HEAD.pack(len(data)) + data


def encode_answer(model: str, version: int, outputs: Mapping[str, Array]) -> bytes:
    """The record of one answer; ``outputs`` are one row's values (numpy arrays; text as an
    object array of str or bytes)."""
    parts = [MAGIC, _text(model), _U32.pack(version), _HEAD.pack(len(outputs))]
    for name, given in outputs.items():
        value = np.asarray(given)
        datatype = DataType.from_numpy(value.dtype)
        parts += [_text(name), bytes([len(datatype.value)]), datatype.value.encode()]
        parts.append(bytes([value.ndim]) + b"".join(_U32.pack(d) for d in value.shape))
        if datatype is DataType.BYTES:
            for item in value.reshape(-1):
                data = item if isinstance(item, bytes) else str(item).encode()
                parts += [_U32.pack(len(data)), data]
        else:
            parts.append(np.ascontiguousarray(value, value.dtype.newbyteorder("<")).tobytes())
    return b"".join(parts)


def decode_answer(record: bytes) -> PrecomputedAnswer:
    """The answer ``encode_answer`` wrote; raises ``ValueError`` for a record it did not."""
    if not record.startswith(MAGIC):
        raise ValueError("not a precomputed answer record (no SVP1 header)")
    view = memoryview(record)
    at = len(MAGIC)

    def text() -> str:
        nonlocal at
        (size,) = _HEAD.unpack_from(view, at)
        at += _HEAD.size + size
        return bytes(view[at - size : at]).decode()

    model = text()
    (version,) = _U32.unpack_from(view, at)
    at += _U32.size
    (count,) = _HEAD.unpack_from(view, at)
    at += _HEAD.size
    outputs: dict[str, Array] = {}
    for _ in range(count):
        name = text()
        size = view[at]
        datatype = DataType(bytes(view[at + 1 : at + 1 + size]).decode())
        at += 1 + size
        rank = view[at]
        shape = struct.unpack_from(f"<{rank}I", view, at + 1)
        at += 1 + 4 * rank
        items = int(np.prod(shape)) if shape else 1
        if datatype is DataType.BYTES:
            values = np.empty(items, dtype=np.object_)
            for index in range(items):
                (length,) = _U32.unpack_from(view, at)
                at += _U32.size
                values[index] = bytes(view[at : at + length])
                at += length
            outputs[name] = values.reshape(shape)
        else:
            dtype = datatype.numpy_dtype.newbyteorder("<")
            end = at + items * dtype.itemsize
            outputs[name] = np.frombuffer(view[at:end], dtype=dtype).reshape(shape)
            at = end
    return PrecomputedAnswer(model, version, outputs)


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
