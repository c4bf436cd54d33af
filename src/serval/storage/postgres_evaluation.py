"""The evaluation store shared by replicas: PostgreSQL (``--store postgresql://...``) through
psycopg 3 and a small connection pool.

serval starts and serves with the database down: the pool opens without waiting for a
connection, every method gives up after ``timeout_s`` and raises ``StoreUnavailableError``
(the prediction log spills, the feedback API answers 503), and the schema is created or
migrated on the first connection that succeeds. Writers of one model's predictions and
ground truth take a transaction-scoped advisory lock on the model, so the joins of the two
always see each other; migrations take one on the schema.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import psycopg
import psycopg_pool

from serval.storage.evaluation import StoreUnavailableError
from serval.storage.sql_evaluation import SqlEvaluationStore, SqlSession
from serval.storage.sql_schema import POSTGRESQL, migrate

_LOCK_KEY = "hashtext('serval:' || current_schema() || ':' || %s)"


@functools.lru_cache(maxsize=256)
def _pyformat(sql: str) -> str:
    """The shared SQL's ``?`` parameters as psycopg's ``%s`` (the SQL holds no ``?`` or
    ``%`` of its own)."""
    return sql.replace("?", "%s")


class _PostgresSession:
    def __init__(self, connection: psycopg.Connection[tuple[Any, ...]]) -> None:
        self._connection = connection

    def rows(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        cursor = self._connection.execute(_pyformat(sql), params)
        return cursor.fetchall() if cursor.description is not None else []

    def run(self, sql: str, params: Sequence[object] = ()) -> int:
        return self._connection.execute(_pyformat(sql), params).rowcount

    def run_many(self, sql: str, params: Sequence[Sequence[object]]) -> None:
        if params:
            with self._connection.cursor() as cursor:
                cursor.executemany(_pyformat(sql), params)  # pipelined: one round trip

    def one_of(self, values: Sequence[str]) -> tuple[str, Sequence[object]]:
        return "= ANY(?)", (list(values),)  # one statement text whatever the count

    def new_ids(self, table: str, count: int) -> list[int]:
        rows = self._connection.execute(
            "SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)",
            (table, count),
        ).fetchall()
        return sorted(int(row[0]) for row in rows)

    def insert(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
        if rows:
            # COPY: a batch of 500 predictions in one exchange, without per-row statements.
            statement = f"COPY {table} ({', '.join(columns)}) FROM STDIN"
            with self._connection.cursor() as cursor, cursor.copy(statement) as copy:
                for row in rows:
                    copy.write_row(row)


class PostgresEvaluationStore(SqlEvaluationStore):
    """An ``EvaluationStore`` in the PostgreSQL database at ``url`` (a libpq URL; its
    ``options=-c search_path=...`` picks a schema)."""

    def __init__(self, url: str, *, timeout_s: float = 3.0, max_connections: int = 4) -> None:
        self._url = url
        self._timeout_s = timeout_s
        self._migrated = False
        self._migrate_lock = threading.Lock()
        # open=True starts the pool's workers and returns at once; min_size=0 makes no
        # connection before one is asked for (no background retries while the store is down).
        self._pool = psycopg_pool.ConnectionPool(
            url,
            min_size=0,
            max_size=max_connections,
            open=True,
            timeout=timeout_s,
            kwargs={"connect_timeout": max(1, round(timeout_s))},
            check=psycopg_pool.ConnectionPool.check_connection,
            name="serval-evaluation",
        )

    @property
    def location(self) -> str:
        parts = urlsplit(self._url)
        host = parts.hostname or "localhost"
        return f"postgresql://{host}:{parts.port or 5432}{parts.path}"  # never the password

    @contextmanager
    def _write(self, models: Collection[str]) -> Iterator[SqlSession]:
        with self._connection() as connection, connection.transaction():
            for model in sorted(models):  # one order: two writers never deadlock
                connection.execute(f"SELECT pg_advisory_xact_lock({_LOCK_KEY})", (model,))
            yield _PostgresSession(connection)

    @contextmanager
    def _read(self) -> Iterator[SqlSession]:
        with self._connection() as connection:
            yield _PostgresSession(connection)

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[tuple[Any, ...]]]:
        try:
            with self._pool.connection() as connection:
                if not self._migrated:
                    self._migrate(connection)
                yield connection
        except (psycopg.OperationalError, psycopg.InterfaceError, psycopg_pool.PoolTimeout) as exc:
            raise StoreUnavailableError(f"{self.location}: {_first_line(exc)}") from exc
        except psycopg_pool.PoolClosed as exc:
            raise StoreUnavailableError(f"{self.location}: the store is closed") from exc

    def _migrate(self, connection: psycopg.Connection[tuple[Any, ...]]) -> None:
        with self._migrate_lock:
            if self._migrated:
                return
            with connection.transaction():
                connection.execute(
                    "SELECT pg_advisory_xact_lock(hashtext('serval-schema:' || current_schema()))"
                )
                migrate(connection, POSTGRESQL)
            self._migrated = True

    def close(self) -> None:
        self._pool.close(timeout=self._timeout_s)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
