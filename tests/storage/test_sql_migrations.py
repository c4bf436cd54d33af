"""Schema versions of the SQL evaluation stores: created on first use, migrated from an older
version, left alone when current, refused when newer; two stores opening a new database at
once apply each step once."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest

from serval.storage import sql_schema
from serval.storage.evaluation import (
    Alert,
    EvaluationStore,
    StoreSchemaError,
    StoreUnavailableError,
    VersionCounts,
)
from serval.storage.postgres_evaluation import PostgresEvaluationStore
from serval.storage.sql_schema import MIGRATIONS, POSTGRESQL, SQLITE, migrate
from serval.storage.sqlite_evaluation import SqliteEvaluationStore
from tests.storage.evaluation_stores import NOW, at_once, postgresql_schema, prediction

Raw = Callable[[], AbstractContextManager[Any]]  # a plain connection, committed on exit


class Database:
    """One empty database of a SQL store: open stores on it, or connect to it raw."""

    def __init__(self, open_store: Callable[[], EvaluationStore], raw: Raw, dialect: Any):
        self.open_store = open_store
        self.raw = raw
        self.dialect = dialect

    def version(self) -> list[int]:
        with self.raw() as connection:
            rows = connection.execute("SELECT version FROM serval_schema_version").fetchall()
        return [int(row[0]) for row in rows]


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    stores: list[EvaluationStore] = []

    def keep(store: EvaluationStore) -> EvaluationStore:
        stores.append(store)
        return store

    if request.param == "sqlite":
        path = tmp_path / "evaluation.sqlite3"

        @contextmanager
        def raw_sqlite() -> Iterator[sqlite3.Connection]:
            connection = sqlite3.connect(path, isolation_level=None)
            connection.execute("BEGIN IMMEDIATE")
            yield connection
            connection.execute("COMMIT")
            connection.close()

        yield Database(lambda: keep(SqliteEvaluationStore(path)), raw_sqlite, SQLITE)
    else:
        with postgresql_schema() as url:

            @contextmanager
            def raw_postgresql() -> Iterator[psycopg.Connection[Any]]:
                with psycopg.connect(url) as connection:
                    yield connection

            yield Database(lambda: keep(PostgresEvaluationStore(url)), raw_postgresql, POSTGRESQL)
            for store in stores:
                store.close()
    for store in stores:
        store.close()


def test_a_new_database_gets_every_step_once_and_opening_again_changes_nothing(
    database: Database,
) -> None:
    first = database.open_store()
    first.write_predictions([prediction("r")])
    assert database.version() == [len(MIGRATIONS)]
    second = database.open_store()
    assert second.counts("m") == {1: VersionCounts(1, 0)}
    assert database.version() == [len(MIGRATIONS)]


def test_stores_opening_a_new_database_at_once_migrate_it_once(database: Database) -> None:
    stores = [database.open_store() for _ in range(4)]
    picks = iter(stores)

    def first_use() -> dict[int, VersionCounts]:
        return next(picks).counts("m")

    assert at_once(4, first_use) == [{}] * 4
    assert database.version() == [len(MIGRATIONS)]


def test_a_database_at_an_older_version_is_migrated_and_keeps_its_rows(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What a serval that knew only the first step (the prediction log) left behind.
    monkeypatch.setattr(sql_schema, "MIGRATIONS", MIGRATIONS[:1])
    older = database.open_store()
    older.write_predictions([prediction("kept")])
    older.close()
    assert database.version() == [1]
    monkeypatch.undo()
    newer = database.open_store()
    assert [p.request_id for p in newer.recent_predictions("m", 1, 5)] == ["kept"]
    assert newer.raise_alert(Alert("m", 1, "drift", "x", 0.3, 0.2, NOW)) is not None
    assert database.version() == [len(MIGRATIONS)]


def test_a_version_table_at_zero_gets_every_step(database: Database) -> None:
    with database.raw() as connection:
        migrate(connection, database.dialect, upto=0)
    assert database.version() == [0]
    store = database.open_store()
    assert store.claim_trigger("m", NOW, 60)
    assert database.version() == [len(MIGRATIONS)]


def test_a_database_from_a_newer_serval_is_unavailable_with_the_reason(
    database: Database,
) -> None:
    with database.raw() as connection:
        migrate(connection, database.dialect)
        connection.execute("UPDATE serval_schema_version SET version = 99")
    store = database.open_store()
    with pytest.raises(StoreSchemaError, match=r"version 99, newer than this serval knows"):
        store.counts("m")
    assert issubclass(StoreSchemaError, StoreUnavailableError)
