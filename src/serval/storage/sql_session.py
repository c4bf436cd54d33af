"""What the shared SQL of the evaluation stores needs of a database connection: SQLite and
PostgreSQL each provide a ``SqlSession`` (``sqlite_evaluation``, ``postgres_evaluation``)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Protocol, TypeVar

_V = TypeVar("_V")
CHUNK = 500  # values of one IN (...) list


class SqlSession(Protocol):
    """One connection inside a transaction (writes) or not (reads)."""

    def rows(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]: ...

    def run(self, sql: str, params: Sequence[object] = ()) -> int:
        """Execute; the number of rows it changed."""
        ...

    def run_many(self, sql: str, params: Sequence[Sequence[object]]) -> None: ...

    def one_of(self, values: Sequence[object]) -> tuple[str, Sequence[object]]:
        """SQL that tests a column against ``values`` (``IN (?, ...)``, ``= ANY(?)``) and its
        parameters."""
        ...

    def new_ids(self, table: str, count: int) -> list[int]:
        """``count`` ids for new rows of ``table`` (ascending; inside a write transaction)."""
        ...

    def insert(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
        """Insert ``rows`` at once (PostgreSQL: COPY)."""
        ...


def chunks(values: Sequence[_V]) -> Iterator[Sequence[_V]]:
    for start in range(0, len(values), CHUNK):
        yield values[start : start + CHUNK]
