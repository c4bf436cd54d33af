"""``serval monitor export|report MODEL``: the prediction log of a model, read from the
evaluation store directly (not through a running server).

``export`` writes the logged predictions joined with their ground truth to Parquet (the data
set to retrain on); ``report`` writes a self-contained HTML report with plots of quality, drift
and prediction distributions. Exit status: 0 done, 1 nothing to export or report (nothing
logged, the store unreachable), 2 a mistake in the command (no store there, a bad ``--out``,
no model folder or a bad ``model.yaml``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from serval.storage.evaluation import EvaluationStore, StoreUnavailableError
from serval.storage.open_store import (
    SQLITE_FILE,
    StoreUrlError,
    open_evaluation_store,
)


class CommandError(Exception):
    """A mistake in the command: the message says which argument and why (exit 2)."""


def register(commands: Any, summary: str) -> None:
    from serval.config import default_state_dir  # noqa: PLC0415 - small; lazy as the rest

    parser = commands.add_parser(
        "monitor",
        help=summary,
        description="Read a model's prediction log and ground truth from the evaluation store.",
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    export = actions.add_parser(
        "export",
        help="write logged predictions joined with ground truth to Parquet",
        description="Write the logged predictions of MODEL joined with their ground truth: one "
        "row per predicted row, with version, time, role, request id, key, inputs, outputs, "
        "ground_truth and labelled_at.",
    )
    report = actions.add_parser(
        "report",
        help="write a self-contained HTML report with plots",
        description="Write an HTML report of MODEL: quality per version over time, drift per "
        "feature, prediction distributions against the reference, alerts and triggers.",
    )
    for action, suffix in ((export, ".parquet"), (report, ".html")):
        action.add_argument("model", help="the model's name")
        action.add_argument("--out", type=Path, required=True, help=f"file to write ({suffix})")
        action.add_argument(
            "--state-dir",
            type=Path,
            default=default_state_dir(),
            help="the server's --state-dir: its SQLite store is evaluation.sqlite3 there "
            f"(default {default_state_dir()})",
        )
        action.add_argument("--store", help="the server's --store: postgresql://user@host:5432/db")
    export.add_argument(
        "--repository",
        type=Path,
        help="the model repository (optional): an input of n columns a row is written as n "
        "columns named as the model's reference file names them",
    )
    report.add_argument(
        "--repository",
        type=Path,
        required=True,
        help="the model repository: the model's model.yaml (monitoring) and reference file",
    )
    export.set_defaults(run=run_export, suffix=".parquet")
    report.set_defaults(run=run_report, suffix=".html")


def run_export(args: argparse.Namespace) -> int:
    return _run("export", args)


def run_report(args: argparse.Namespace) -> int:
    return _run("report", args)


def _work(action: str, args: argparse.Namespace, store: EvaluationStore) -> str:
    """Export or report; the line that says what was written."""
    from serval.evaluation.reporting.logged_model import feature_names, monitored_model  # noqa: PLC0415

    if action == "export":
        from serval.evaluation.reporting.export import export_predictions  # noqa: PLC0415 - pyarrow

        names: dict[str, list[str]] = {}
        if args.repository is not None:
            names, reason = feature_names(store, monitored_model(args.repository, args.model))
            if reason:
                print(f"note: inputs keep their own columns: {reason}", file=sys.stderr)
        summary = export_predictions(store, args.model, args.out, feature_names=names)
        return (
            f"wrote {args.out}: {summary.rows} rows ({summary.labelled} with ground truth) "
            f"from {summary.requests} logged requests"
        )
    from serval.evaluation.reporting.report import write_report  # noqa: PLC0415 - matplotlib

    model = monitored_model(args.repository, args.model)
    return f"wrote {args.out}: {write_report(store, model, args.out)}"


def _run(action: str, args: argparse.Namespace) -> int:
    """Open the store, do the work, and say what came of it: one line on stdout, or one on
    stderr naming what went wrong (never a traceback)."""
    prefix = f"serval monitor {action}"
    try:
        from serval.evaluation.reporting.export import NothingLoggedError  # noqa: PLC0415 - pyarrow
        from serval.evaluation.reporting.logged_model import RepositoryError  # noqa: PLC0415
    except ImportError as exc:
        print(
            f"{prefix}: needs the monitoring extra ({exc.name} is not installed): "
            "pip install 'serval-server[monitoring]'",
            file=sys.stderr,
        )
        return 2
    try:
        store = _open_store(args)
    except (CommandError, StoreUrlError) as exc:
        print(f"{prefix}: {exc}", file=sys.stderr)
        return 2
    try:
        print(_work(action, args, store))
    except RepositoryError as exc:
        print(f"{prefix}: {exc}", file=sys.stderr)
        return 2
    except NothingLoggedError as exc:
        print(f"{prefix}: {exc}", file=sys.stderr)
        return 1
    except StoreUnavailableError as exc:
        print(f"{prefix}: cannot read the store {store.location}: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"{prefix}: --out {args.out}: cannot write: {exc.strerror or exc}", file=sys.stderr)
        return 1
    finally:
        store.close()
    return 0


def _open_store(args: argparse.Namespace) -> EvaluationStore:

    out: Path = args.out
    if out.suffix.lower() != args.suffix:
        raise CommandError(f"--out {out}: the file name must end {args.suffix}")
    if not out.parent.is_dir():
        raise CommandError(f"--out {out}: no folder {out.parent}")
    if not args.store:
        # Opening a SQLite store creates it: a wrong --state-dir would read as an empty log.
        path = args.state_dir / SQLITE_FILE
        if not path.is_file():
            raise CommandError(
                f"no evaluation store at {path} (--state-dir {args.state_dir}); pass the "
                "--state-dir or --store the server runs with"
            )
    return open_evaluation_store(args.store, args.state_dir)
