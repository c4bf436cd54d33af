"""The evaluation stores the contract suite runs against: in memory, a SQLite file under the
test's tmp_path, and the machine's PostgreSQL (127.0.0.1:5432, database ``test``) in a schema
of the test's own (``options=-c search_path=...``), dropped afterwards, so that parallel runs
never meet."""

from __future__ import annotations

import getpass
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar
from urllib.parse import quote

import psycopg

from serval.storage.evaluation import EvaluationStore, LoggedPrediction, Role
from serval.storage.memory_evaluation import MemoryEvaluationStore
from serval.storage.postgres_evaluation import PostgresEvaluationStore
from serval.storage.sqlite_evaluation import SqliteEvaluationStore

POSTGRESQL = "postgresql://{user}@127.0.0.1:5432/test"
NOW = 1_800_000_000.0
T = TypeVar("T")
KINDS = ("memory", "sqlite", "postgresql")

# Opens the store under test; called again, another instance over the same data (another
# process's view, or the store after a restart). Memory: the same instance.
StoreFactory = Callable[[], EvaluationStore]


def postgresql_user() -> str:
    """root or postgres, whichever this machine's PostgreSQL trusts."""
    for user in (getpass.getuser(), "postgres", "root"):
        try:
            with psycopg.connect(POSTGRESQL.format(user=user), connect_timeout=3):
                return user
        except psycopg.OperationalError:
            continue
    raise RuntimeError("no PostgreSQL user of root, postgres accepted on 127.0.0.1:5432/test")


@contextmanager
def postgresql_schema() -> Iterator[str]:
    """A URL whose connections use a new schema of their own; the schema goes afterwards."""
    base = POSTGRESQL.format(user=postgresql_user())
    schema = f"serval_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(base, autocommit=True) as connection:
        connection.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{base}?options={quote(f'-c search_path={schema}')}"
    finally:
        with psycopg.connect(base, autocommit=True) as connection:
            connection.execute(f"DROP SCHEMA {schema} CASCADE")


@contextmanager
def store_factory(kind: str, tmp_path: Path) -> Iterator[StoreFactory]:
    opened: list[EvaluationStore] = []

    def keep(store: EvaluationStore) -> EvaluationStore:
        opened.append(store)
        return store

    try:
        if kind == "memory":
            memory = MemoryEvaluationStore()
            yield lambda: memory
        elif kind == "sqlite":
            path = tmp_path / "state" / "evaluation.sqlite3"
            yield lambda: keep(SqliteEvaluationStore(path))
        else:
            with postgresql_schema() as url:
                yield lambda: keep(PostgresEvaluationStore(url))
                for store in opened:
                    store.close()
    finally:
        for store in opened:
            store.close()


def prediction(
    request_id: str | None = None,
    *,
    at: float = NOW,
    version: int = 1,
    model: str = "m",
    role: Role = "primary",
    keys: tuple[str, ...] | None = None,
    rows: int = 1,
) -> LoggedPrediction:
    return LoggedPrediction(
        model=model,
        version=version,
        request_id=request_id,
        timestamp=at,
        role=role,
        latency_ms=1.5,
        rows=len(keys) if keys is not None else rows,
        keys=keys,
        inputs=b'{"x":{"datatype":"FP32","shape":[1,2],"data":[1.0,2.0]}}',
        outputs=f'{{"y":"{request_id}"}}'.encode(),
    )


def at_once(threads: int, action: Callable[[], T]) -> list[T]:
    """``action`` run by ``threads`` threads released together."""
    barrier = threading.Barrier(threads)
    results: list[T] = []
    lock = threading.Lock()

    def run() -> None:
        barrier.wait(timeout=30)
        result = action()
        with lock:
            results.append(result)

    workers = [threading.Thread(target=run) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert len(results) == threads
    return results
