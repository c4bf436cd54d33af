"""The embedded evaluation store: one SQLite file under ``--state-dir``, shared by the server's
worker processes.

WAL mode lets readers go on while one process writes; writers take the file's write lock at
the start of their transaction (BEGIN IMMEDIATE: never a lock upgrade that can deadlock) and
wait up to ``busy_timeout_s`` for it. sqlite3 connections cannot be shared between threads,
so each thread opens its own on first use and keeps it until ``close()`` (the callers use a
few long-lived threads: the prediction log's writer, the default executor's).
``synchronous=FULL``: a commit is on disk when it returns (ground truth is acknowledged to the
client after it).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from serval.storage.evaluation import StoreUnavailableError
from serval.storage.sql_evaluation import SqlEvaluationStore
from serval.storage.sql_schema import SQLITE, migrate
from serval.storage.sql_session import SqlSession

_ROWS_PER_INSERT = 500  # a cap on the rows of one INSERT


class _SqliteSession:
    def __init__(self, connection: sqlite3.Connection) -> None:
        self._connection = connection

    def rows(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        return self._connection.execute(sql, params).fetchall()

    def run(self, sql: str, params: Sequence[object] = ()) -> int:
        return self._connection.execute(sql, params).rowcount

    def run_many(self, sql: str, params: Sequence[Sequence[object]]) -> None:
        if params:
            self._connection.executemany(sql, params)

    def one_of(self, values: Sequence[object]) -> tuple[str, Sequence[object]]:
        return f"IN ({', '.join('?' * len(values))})", values

    def new_ids(self, table: str, count: int) -> list[int]:
        # Inside BEGIN IMMEDIATE no other connection inserts: the next ids are ours.
        [(last,)] = self._connection.execute(f"SELECT COALESCE(MAX(id), 0) FROM {table}")
        return list(range(int(last) + 1, int(last) + 1 + count))

    def insert(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
        # Many rows per statement, not executemany: sqlite3 lets the GIL go around each
        # statement it steps, and taking it back row after row contends with the event loop
        # (a batch of 500 predictions cost the loop about half its throughput).
        variables = self._connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
        per_statement = max(1, min(_ROWS_PER_INSERT, variables // len(columns)))
        head = f"INSERT INTO {table} ({', '.join(columns)}) VALUES "
        row_marks = f"({', '.join('?' * len(columns))})"
        for start in range(0, len(rows), per_statement):
            chunk = rows[start : start + per_statement]
            params = [value for row in chunk for value in row]
            self._connection.execute(head + ", ".join([row_marks] * len(chunk)), params)


class SqliteEvaluationStore(SqlEvaluationStore):
    """An ``EvaluationStore`` in the SQLite file ``path`` (and its folder), created and
    migrated on first use."""

    def __init__(self, path: Path, *, busy_timeout_s: float = 10.0) -> None:
        self._path = path
        self._busy_timeout_s = busy_timeout_s
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[sqlite3.Connection] = []
        self._prepare_lock = threading.Lock()
        self._prepared = False
        self._closed = False

    @property
    def location(self) -> str:
        return f"sqlite:{self._path}"

    @contextmanager
    def _write(self, models: Collection[str]) -> Iterator[SqlSession]:
        with self._unavailable_on_failure():
            connection = self._connection()
            connection.execute("BEGIN IMMEDIATE")
            try:
                yield _SqliteSession(connection)
                connection.execute("COMMIT")
            except BaseException:
                if connection.in_transaction:  # the body failed, or COMMIT did (a full disk)
                    connection.rollback()
                raise

    @contextmanager
    def _read(self) -> Iterator[SqlSession]:
        with self._unavailable_on_failure():
            yield _SqliteSession(self._connection())

    @contextmanager
    def _unavailable_on_failure(self) -> Iterator[None]:
        try:
            yield
        except (sqlite3.OperationalError, OSError) as exc:
            # Locked past the busy timeout, a folder that cannot be made, a full disk.
            raise StoreUnavailableError(f"{self.location}: {exc}") from exc
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.IntegrityError | sqlite3.ProgrammingError):
                raise  # ours, not the file's
            raise StoreUnavailableError(f"{self.location}: {exc}") from exc

    def _connection(self) -> sqlite3.Connection:
        if self._closed:
            raise StoreUnavailableError(f"{self.location}: the store is closed")
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is not None:
            return connection
        self._path.parent.mkdir(parents=True, exist_ok=True)
        # Autocommit (isolation_level None): the transactions are the BEGIN ... COMMIT above.
        connection = sqlite3.connect(
            self._path,
            timeout=self._busy_timeout_s,
            isolation_level=None,
            check_same_thread=False,  # close() may run on another thread
        )
        try:
            connection.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_s * 1000)}")
            connection.execute("PRAGMA synchronous = FULL")
            self._prepare(connection)
        except BaseException:
            connection.close()
            raise
        with self._lock:
            self._connections.append(connection)
        self._local.connection = connection
        return connection

    def _prepare(self, connection: sqlite3.Connection) -> None:
        """WAL mode and the schema, once per store (both are kept in the file)."""
        with self._prepare_lock:
            if self._prepared:
                return
            self._use_wal(connection)
            connection.execute("BEGIN IMMEDIATE")  # the write lock: other processes wait
            try:
                migrate(connection, SQLITE)
                connection.execute("COMMIT")
            except BaseException:
                if connection.in_transaction:
                    connection.rollback()
                raise
            self._prepared = True

    def _use_wal(self, connection: sqlite3.Connection) -> None:
        # Changing the journal mode does not wait on the busy handler: a process switching
        # it while another does gets "database is locked" at once, so wait here.
        deadline = time.monotonic() + self._busy_timeout_s
        while True:
            try:
                connection.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            connections, self._connections = self._connections, []
        for connection in connections:
            connection.close()
