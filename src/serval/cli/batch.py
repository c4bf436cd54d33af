"""``serval batch MODEL_FOLDER --input PATH --output PATH``: score files with a model folder.

A thin command over ``serval.batch`` (docs/batch.md): the options become a ``BatchJob``; the
job's errors are printed as one line naming the file, column or part, never a traceback.
Ctrl-C and SIGTERM stop the job with what was written kept: ``--resume`` continues it.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Any

from serval.core.errors import ServalError

EXIT_INTERRUPTED = 130


def register(commands: Any, summary: str) -> None:
    parser = commands.add_parser(
        "batch",
        help=summary,
        description="Score Parquet, CSV or JSON lines files with a model folder of a "
        "repository, as the server would serve it: one output part per input part, keyed, "
        "resumable, on this machine or on Ray.",
    )
    parser.add_argument("model_folder", type=Path, help="the model's folder (repo/classifier)")
    parser.add_argument(
        "--input", required=True, help="a file, a folder of files or a glob (.parquet .csv .jsonl)"
    )
    parser.add_argument(
        "--output",
        required=True,
        type=Path,
        help="output folder; its extension picks the format: .parquet (default), .csv, .jsonl",
    )
    parser.add_argument("--version", type=int, help="model version (default: the highest served)")
    parser.add_argument(
        "--key",
        action="append",
        default=[],
        help="a column passed through untouched (repeatable); without one, a row index is written",
    )
    parser.add_argument("--columns", help="the columns of a [-1, n] input, in order: a,b,c")
    parser.add_argument(
        "--map",
        action="append",
        default=[],
        metavar="INPUT=COL[,COL...]",
        help="the columns of a model input (repeatable)",
    )
    parser.add_argument("--batch-rows", type=int, help="rows per model call (default 4096)")
    resume = parser.add_mutually_exclusive_group()
    resume.add_argument(
        "--resume", action="store_true", help="skip the parts an earlier run of the job wrote"
    )
    resume.add_argument(
        "--overwrite", action="store_true", help="replace the parts of an existing output"
    )
    parser.add_argument(
        "--on-error",
        choices=("stop", "skip"),
        default="stop",
        help="rows the model fails on: stop the job (default) or write them with an error",
    )
    parser.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="local",
        help="local (this process, default) or ray (Ray Data; needs --key)",
    )
    parser.add_argument("--ray-address", help="an existing Ray cluster (default: start one)")
    parser.add_argument(
        "--to", help="also store each row's outputs by key: redis://HOST:PORT/DB or sqlite:///PATH"
    )
    parser.add_argument("--redis-prefix", default="serval:", help="Redis key prefix for --to")
    parser.add_argument(
        "--threads",
        type=int,
        help="the model's threads: its runtime's threads option (ONNX intra_op_threads, "
        "XGBoost nthread, LightGBM num_threads) in place of model.yaml's",
    )
    parser.add_argument(
        "--no-progress", action="store_true", help="log lines instead of a progress bar"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from serval.batch.job import DEFAULT_BATCH_ROWS, BatchJob, parse_mapping, score  # noqa: PLC0415
    from serval.batch.progress import LogProgress, terminal_progress  # noqa: PLC0415

    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        job = BatchJob(
            model=args.model_folder,
            input=args.input,
            output=args.output,
            version=args.version,
            keys=tuple(args.key),
            columns=_split(args.columns),
            mapping=parse_mapping(args.map),
            batch_rows=args.batch_rows or DEFAULT_BATCH_ROWS,
            resume=args.resume,
            overwrite=args.overwrite,
            on_error=args.on_error,
            engine=args.engine,
            ray_address=args.ray_address,
            to=args.to,
            redis_prefix=args.redis_prefix,
            threads=args.threads,
        )
        summary = score(job, LogProgress() if args.no_progress else terminal_progress())
    except ServalError as exc:
        print(f"serval batch: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            f"serval batch: interrupted; the parts written are kept in {args.output}: "
            f"rerun with --resume to continue",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    print(summary.line(), file=sys.stderr)
    return 0


def _interrupt(signum: int, frame: FrameType | None) -> None:
    # SIGTERM as Ctrl-C: the part being written is removed, the manifest keeps the others.
    raise KeyboardInterrupt


def _split(text: str | None) -> tuple[str, ...] | None:
    return None if text is None else tuple(c.strip() for c in text.split(",") if c.strip())
