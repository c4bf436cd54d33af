"""``serval monitor report`` without a browser: what each missing piece (no reference, no
ground truth) puts in place of its plot, the buckets of quality over time, and the CLI's
answers to what a user can get wrong."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from serval.evaluation.reporting.logged_model import monitored_model
from serval.evaluation.reporting.report import render
from serval.evaluation.reporting.report_data import choose_bucket, gather
from serval.storage.sqlite_evaluation import SqliteEvaluationStore
from tests.evaluation.monitored_store import MODEL, build


def report_of(root: Path, *, reference: bool, labels: bool) -> tuple[str, int]:
    monitored = build(root, reference=reference, labels=labels)
    store = SqliteEvaluationStore(monitored.state_dir / "evaluation.sqlite3")
    try:
        return render(gather(store, monitored_model(monitored.repository, MODEL)))
    finally:
        store.close()


def test_full_report_has_every_plot_and_the_summary(tmp_path: Path) -> None:
    page, plots = report_of(tmp_path, reference=True, labels=True)
    assert plots == 6
    assert "<th>accuracy</th>" in page
    assert "charges, prediction" in page  # v2's drifted subjects, in the summary
    assert "command</td><td>ok" in page  # the trigger


def test_missing_reference_and_labels_give_sentences_not_plots(tmp_path: Path) -> None:
    page, plots = report_of(tmp_path, reference=False, labels=False)
    assert plots == 0
    assert "No ground truth has been joined to a logged prediction yet." in page
    assert "Drift is unavailable: reference reference.parquet: no such file" in page
    assert "No reference to compare with" in page


def test_quality_buckets_narrow_when_the_data_spans_little() -> None:
    assert choose_bucket([], 3600.0) == 3600.0
    assert choose_bucket([0.0, 86400.0], 3600.0) == 3600.0  # 24 buckets: as configured
    assert choose_bucket([0.0, 7200.0], 3600.0) == 600.0  # 2 h: 10-minute buckets
    assert choose_bucket([5.0, 5.0], 3600.0) == 1.0


def serval(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "serval", "monitor", "report", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def monitored(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    built = build(tmp_path_factory.mktemp("report"), reference=False)
    return built.repository, built.state_dir


def test_cli_names_the_mistake(monitored: tuple[Path, Path], tmp_path: Path) -> None:
    repository, state = monitored
    out = str(tmp_path / "report.html")
    common = ["--out", out, "--state-dir", str(state)]

    no_repository = serval(MODEL, *common)
    assert no_repository.returncode == 2 and "--repository" in no_repository.stderr

    no_folder = serval("ghost", *common, "--repository", str(repository))
    assert no_folder.returncode == 2
    assert "no model folder 'ghost'" in no_folder.stderr

    (repository / "plain" / "1").mkdir(parents=True)
    unmonitored = serval("plain", *common, "--repository", str(repository))
    assert unmonitored.returncode == 2
    assert "has no monitoring section" in unmonitored.stderr

    (repository / "quiet").mkdir()
    (repository / "quiet" / "model.yaml").write_text("monitoring: {log: {sample_rate: 1}}\n")
    nothing = serval("quiet", *common, "--repository", str(repository))
    assert nothing.returncode == 1
    assert "'quiet': nothing logged" in nothing.stderr

    bad_yaml = repository / "broken"
    bad_yaml.mkdir()
    (bad_yaml / "model.yaml").write_text("monitoring: {drift: {method: psi}}\n")
    broken = serval("broken", *common, "--repository", str(repository))
    assert broken.returncode == 2
    assert "model.yaml" in broken.stderr and "reference" in broken.stderr

    for result in (no_folder, unmonitored, nothing, broken):
        assert "Traceback" not in result.stderr

    done = serval(MODEL, *common, "--repository", str(repository))
    assert done.returncode == 0, done.stderr
    assert Path(out).is_file()
