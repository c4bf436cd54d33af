"""Which evaluation store the settings open, and stores that cannot be reached: serval starts
with them (constructors never connect) and each use says StoreUnavailableError, with where."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from serval.storage.evaluation import EvaluationStore, StoreUnavailableError
from serval.storage.open_store import StoreUrlError, open_evaluation_store
from serval.storage.postgres_evaluation import PostgresEvaluationStore
from serval.storage.sqlite_evaluation import SqliteEvaluationStore
from serval.testing import free_port
from tests.storage.evaluation_stores import prediction


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
        with pytest.raises(StoreUnavailableError, match=r"^postgresql://127\.0\.0\.1:\d+/test: "):
            call()
    store.close()
    with pytest.raises(StoreUnavailableError):
        store.counts("m")


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
