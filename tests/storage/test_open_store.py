"""Which evaluation store the settings open, and stores that cannot be reached: serval starts
with them (constructors never connect) and each use says StoreUnavailableError, with where."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from serval.storage.evaluation import EvaluationStore, StoreSchemaError, StoreUnavailableError
from serval.storage.open_store import StoreUrlError, open_evaluation_store
from serval.storage.postgres_evaluation import PostgresEvaluationStore
from serval.storage.sqlite_evaluation import SqliteEvaluationStore
from serval.testing import free_port
from tests.storage.evaluation_stores import postgresql_schema, postgresql_user, prediction


def test_without_a_url_the_store_is_sqlite_under_the_state_dir(tmp_path: Path) -> None:
    state_dir = tmp_path / "state" / "serval"
    store = open_evaluation_store(None, state_dir)
    assert isinstance(store, SqliteEvaluationStore)
    assert store.location == f"sqlite:{state_dir / 'evaluation.sqlite3'}"
    assert not state_dir.exists()  # made on first use
    store.write_predictions([prediction("r")])
    assert (state_dir / "evaluation.sqlite3").is_file()
    store.close()


def test_a_sqlite_url_names_the_file(tmp_path: Path) -> None:
    store = open_evaluation_store(f"sqlite://{tmp_path}/x.db", tmp_path / "unused")
    assert store.location == f"sqlite:{tmp_path}/x.db"
    store.close()


def test_a_postgresql_url_opens_postgresql_and_its_location_has_no_password(
    tmp_path: Path,
) -> None:
    store = open_evaluation_store("postgresql://serval:secret@db.example:5433/evals", tmp_path)
    assert isinstance(store, PostgresEvaluationStore)
    assert store.location == "postgresql://db.example:5433/evals"
    store.close()


def test_an_unknown_scheme_is_refused_naming_the_setting(tmp_path: Path) -> None:
    with pytest.raises(StoreUrlError, match=r"^store: unsupported scheme 'mysql'"):
        open_evaluation_store("mysql://db/evals", tmp_path)


def test_without_psycopg_a_postgresql_url_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)  # as if not installed
    monkeypatch.delitem(sys.modules, "serval.storage.postgres_evaluation")
    with pytest.raises(StoreUrlError, match=r"serval-server\[postgresql\]"):
        open_evaluation_store("postgresql://localhost/evals", tmp_path)


def test_a_postgresql_that_is_down_is_unavailable_at_each_use() -> None:
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/test"  # nothing listens there
    store = PostgresEvaluationStore(url, timeout_s=1.0)  # returns without connecting
    calls: list[Callable[[], object]] = [
        lambda: store.write_predictions([prediction("r")]),
        lambda: store.counts("m"),
        lambda: store.claim_trigger("m", 0.0, 60),
    ]
    for call in calls:
        with pytest.raises(
            StoreUnavailableError, match=r"^postgresql://127\.0\.0\.1:\d+/test: .*refused"
        ):
            call()
    store.close()
    with pytest.raises(StoreUnavailableError, match="closed"):
        store.counts("m")


def test_a_postgresql_that_refuses_says_why() -> None:
    missing = f"serval_missing_{uuid.uuid4().hex[:8]}"
    url = f"postgresql://{postgresql_user()}@127.0.0.1:5432/{missing}"
    store = PostgresEvaluationStore(url, timeout_s=1.0)
    with pytest.raises(StoreUnavailableError, match=rf'database "{missing}" does not exist'):
        store.counts("m")
    store.close()


def test_a_role_that_cannot_create_tables_gets_the_reason() -> None:
    role = f"serval_test_{uuid.uuid4().hex[:8]}"
    with postgresql_schema() as url, psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {role} LOGIN")
        try:
            user = url.split("//", 1)[1].split("@", 1)[0]
            store = PostgresEvaluationStore(url.replace(f"//{user}@", f"//{role}@", 1))
            with pytest.raises(StoreSchemaError, match="cannot create or migrate serval's tables"):
                store.counts("m")
            store.close()
        finally:
            admin.execute(f"DROP ROLE {role}")


@pytest.mark.parametrize("damage", ["parent is a file", "not a database"])
def test_a_sqlite_file_that_cannot_be_used_is_unavailable_with_its_path(
    tmp_path: Path, damage: str
) -> None:
    if damage == "parent is a file":
        (tmp_path / "state").write_text("a file where the folder would go")
        path = tmp_path / "state" / "evaluation.sqlite3"
    else:
        path = tmp_path / "evaluation.sqlite3"
        path.write_bytes(b"these bytes are no SQLite database" * 100)
    store: EvaluationStore = SqliteEvaluationStore(path)
    with pytest.raises(StoreUnavailableError, match=rf"^sqlite:{path}: "):
        store.write_predictions([prediction("r")])
    store.close()


def test_connections_lost_by_the_server_are_replaced_without_a_failed_call() -> None:
    name = f"serval-test-{uuid.uuid4().hex[:8]}"
    with postgresql_schema() as url, psycopg.connect(url, autocommit=True) as admin:
        store = PostgresEvaluationStore(f"{url}&application_name={name}")
        store.write_predictions([prediction("r")])
        killed = admin.execute(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = %s) AS t",
            (name,),
        ).fetchone()
        assert killed is not None and killed[0] >= 1  # as a restart of the server would
        assert [p.request_id for p in store.recent_predictions("m", 1, 5)] == ["r"]
        store.close()
