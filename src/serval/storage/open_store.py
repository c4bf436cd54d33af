"""The evaluation store the settings ask for: PostgreSQL when ``--store`` names one, else the
SQLite file ``evaluation.sqlite3`` under ``--state-dir``. psycopg is the ``postgresql`` extra:
imported only when a URL asks for it."""

from __future__ import annotations

from pathlib import Path

from serval.storage.evaluation import EvaluationStore
from serval.storage.sqlite_evaluation import SqliteEvaluationStore

SQLITE_FILE = "evaluation.sqlite3"
_POSTGRESQL_SCHEMES = ("postgresql://", "postgres://")


class StoreUrlError(ValueError):
    """``--store`` names no store serval can open (the message says why)."""


def open_evaluation_store(store_url: str | None, state_dir: Path) -> EvaluationStore:
    """The store at ``store_url`` (postgresql://user@host:5432/db), or SQLite under
    ``state_dir``. Never connects: a store that is down is found out by its first use."""
    if not store_url:
        return SqliteEvaluationStore(state_dir / SQLITE_FILE)
    if store_url.startswith("sqlite:"):
        # sqlite:/abs/path or sqlite:///abs/path: a file of the user's choosing.
        path = store_url.removeprefix("sqlite:").removeprefix("//")
        if not path:
            raise StoreUrlError(f"store: {store_url!r} names no file (sqlite:/path/to/file)")
        return SqliteEvaluationStore(Path(path))
    if not store_url.startswith(_POSTGRESQL_SCHEMES):
        scheme = store_url.partition(":")[0]
        raise StoreUrlError(
            f"store: unsupported scheme {scheme!r}; use postgresql://user@host:5432/db "
            "(or leave it unset for SQLite under state_dir)"
        )
    try:
        from serval.storage.postgres_evaluation import (  # noqa: PLC0415 - the extra
            PostgresEvaluationStore,
        )
    except ImportError as exc:
        raise StoreUrlError(
            f"store: a PostgreSQL store needs psycopg ({exc.name} is not installed): "
            "pip install 'serval-server[postgresql]'"
        ) from exc
    return PostgresEvaluationStore(store_url)
