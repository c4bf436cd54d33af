"""The server's readers of precomputed answers (``precomputed: {store: ...}``): the keys of a
batch of rows in one lookup, from what ``serval batch --to`` wrote
(``serval.storage.precomputed`` has the format and the writers)."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from serval.core.composition.stores import LookupUnavailableError, PrecomputedAnswer
from serval.storage.precomputed import decode_answer

if TYPE_CHECKING:  # the SQLite reader works without the redis extra
    import redis.asyncio as aioredis

    from serval.storage.redis_connection import RedisConnection

log = logging.getLogger(__name__)

SQLITE_CHUNK = 500  # keys per query: well under SQLite's limit of bound parameters


class _Decoder:
    """Records to answers; an undecodable record is no answer, logged once per reader."""

    def __init__(self, where: str) -> None:
        self._where = where
        self._warned = False

    def __call__(self, key: str, record: bytes | None) -> PrecomputedAnswer | None:
        if record is None:
            return None
        try:
            return decode_answer(bytes(record))
        except ValueError as exc:
            if not self._warned:
                self._warned = True
                log.warning(
                    "precomputed %s: key %r is not an answer record: %s", self._where, key, exc
                )
            return None


class RedisPrecomputedReader:
    """Answers at ``{prefix}precomputed:{model}:{key}``: one MGET per lookup."""

    def __init__(self, connection: RedisConnection, prefix: str = "serval:") -> None:
        self._connection = connection
        self._prefix = prefix
        self._decode = _Decoder(f"redis {connection.describe()}")

    @property
    def connection(self) -> RedisConnection:
        """The (shared) connection it talks through."""
        return self._connection

    def key(self, model: str, key: str) -> str:
        return f"{self._prefix}precomputed:{model}:{key}"

    async def get_many(self, model: str, keys: Sequence[str]) -> list[PrecomputedAnswer | None]:
        if not keys:
            return []
        names = [self.key(model, key) for key in keys]

        async def mget(client: aioredis.Redis) -> list[Any]:
            return list(await client.mget(names))

        records = await self._connection.run(mget)
        return [self._decode(key, record) for key, record in zip(keys, records, strict=True)]

    async def close(self) -> None:
        """Nothing of its own to close: the connection is shared."""


class SqlitePrecomputedReader:
    """Answers in the ``precomputed`` table of a SQLite file, read in a worker thread (one
    query per 500 keys). A file or table not written yet holds no answers."""

    def __init__(self, path: Path, *, busy_timeout_s: float = 1.0) -> None:
        self._path = path
        self._busy_timeout_s = busy_timeout_s
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._decode = _Decoder(f"sqlite {path}")
        self._warned_empty = False

    @property
    def path(self) -> Path:
        return self._path

    async def get_many(self, model: str, keys: Sequence[str]) -> list[PrecomputedAnswer | None]:
        if not keys:
            return []
        try:
            records = await asyncio.to_thread(self._read, model, list(keys))
        except (sqlite3.Error, OSError) as exc:
            raise LookupUnavailableError(f"sqlite {self._path}: {exc}") from exc
        return [self._decode(key, records.get(key)) for key in keys]

    def _read(self, model: str, keys: list[str]) -> dict[str, bytes]:
        with self._lock:
            db = self._open()
            if db is None:
                return {}
            found: dict[str, bytes] = {}
            try:
                for start in range(0, len(keys), SQLITE_CHUNK):
                    chunk = keys[start : start + SQLITE_CHUNK]
                    marks = ",".join("?" * len(chunk))
                    rows = db.execute(
                        f"SELECT key, answer FROM precomputed WHERE model = ? AND key IN ({marks})",
                        (model, *chunk),
                    )
                    found.update(rows)
            except sqlite3.OperationalError as exc:
                if "no such table" not in str(exc):
                    raise
                self._not_written(f"no table precomputed ({exc})")
            return found

    def _open(self) -> sqlite3.Connection | None:
        if self._db is not None:
            return self._db
        if not self._path.exists():
            self._not_written("no such file")
            return None
        # mode=rw: never creates the file (a typo in the path is not a new, empty store).
        uri = f"file:{quote(str(self._path.resolve()))}?mode=rw"
        self._db = sqlite3.connect(
            uri, uri=True, timeout=self._busy_timeout_s, check_same_thread=False
        )
        return self._db

    def _not_written(self, why: str) -> None:
        if not self._warned_empty:
            self._warned_empty = True
            log.warning(
                "precomputed sqlite %s: %s; no answers until a batch job writes them",
                self._path,
                why,
            )

    async def close(self) -> None:
        await asyncio.to_thread(self._close)  # the lock may be held by a read in progress

    def _close(self) -> None:
        with self._lock:
            db, self._db = self._db, None
            if db is not None:
                db.close()
