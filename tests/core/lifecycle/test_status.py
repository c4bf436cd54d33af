"""The repository index rows of a model whose source withholds a version."""

from __future__ import annotations

from pathlib import Path

from serval.core.lifecycle.record import ModelRecord
from serval.core.lifecycle.source import ModelSource, VersionSource
from serval.core.lifecycle.states import ServableState
from serval.core.lifecycle.status import index_entries
from serval.core.model_spec import ModelSpec


def test_a_withheld_version_has_a_row_with_its_reason() -> None:
    source = ModelSource(
        "m",
        Path("m"),
        ModelSpec(),
        versions={1: VersionSource(1, Path("m/1"), "f1")},
        withheld={2: "version 2 is incomplete: w.bin is missing"},
    )
    record = ModelRecord("m", wanted=True, source=source)
    rows = index_entries(record)
    assert [(r.version, r.state, r.reason) for r in rows] == [
        (2, ServableState.START, "version 2 is incomplete: w.bin is missing")
    ]


def test_a_model_with_only_a_withheld_version_says_why_in_its_row() -> None:
    source = ModelSource("m", Path("m"), ModelSpec(), withheld={1: "incomplete"})
    rows = index_entries(ModelRecord("m", wanted=True, source=source))
    assert [(r.version, r.reason) for r in rows] == [(1, "incomplete")]
