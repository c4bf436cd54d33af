"""What the evaluation tests share as fixtures: a real SQLite evaluation store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from serval.storage.evaluation import EvaluationStore
from serval.storage.sqlite_evaluation import SqliteEvaluationStore


@pytest.fixture
def store(tmp_path: Path) -> Iterator[EvaluationStore]:
    sqlite = SqliteEvaluationStore(tmp_path / "state" / "evaluation.sqlite3")
    yield sqlite
    sqlite.close()
