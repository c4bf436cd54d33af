"""How fast an evaluation store takes the prediction log's batches: ``write_predictions`` of
``--batch`` records (keyed, two rows each, a small tensor document) ``--batches`` times, then
ground truth by request id and by key, and the reads the evaluation makes.

    python bench/evaluation_store.py --store sqlite
    python bench/evaluation_store.py --store postgresql://postgres@127.0.0.1:5432/test

PostgreSQL runs in a schema of its own, dropped afterwards. Prints records per second.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

from serval.storage.evaluation import EvaluationStore, GroundTruth, LoggedPrediction
from serval.storage.sqlite_evaluation import SqliteEvaluationStore

INPUTS = b'{"x":{"datatype":"FP32","shape":[2,4],"data":[1,2,3,4,5,6,7,8]}}'
OUTPUTS = b'{"y":{"datatype":"INT64","shape":[2],"data":[0,1]}}'


def batch(size: int, start: int) -> list[LoggedPrediction]:
    now = time.time()
    return [
        LoggedPrediction(
            "bench", 1, f"r{n}", now, "primary", 1.0, 2, (f"u{n}", f"v{n}"), INPUTS, OUTPUTS
        )
        for n in range(start, start + size)
    ]


def timed(label: str, count: int, action: Callable[[], object]) -> None:
    started = time.perf_counter()
    action()
    elapsed = time.perf_counter() - started
    print(f"{label:<44} {count:>7} in {elapsed:6.3f} s  {count / elapsed:>9.0f}/s")


def run(store: EvaluationStore, batches: int, size: int) -> None:
    store.write_predictions(batch(1, -1))  # schema, connection
    chunks = [batch(size, n * size) for n in range(batches)]

    def write_all() -> None:
        for chunk in chunks:
            store.write_predictions(chunk)

    total = batches * size
    timed(f"write_predictions, batches of {size}", total, write_all)
    now = time.time()
    by_id = [GroundTruth("bench", f"r{n}", None, b"1", now) for n in range(0, total, 10)]
    by_key = [GroundTruth("bench", None, f"u{n}", b"0", now) for n in range(5, total, 10)]
    timed("write_ground_truth by request id", len(by_id), lambda: store.write_ground_truth(by_id))
    timed("write_ground_truth by key", len(by_key), lambda: store.write_ground_truth(by_key))
    timed(
        "recent_predictions(limit=1000)", 1000, lambda: store.recent_predictions("bench", 1, 1000)
    )
    timed("labelled(limit=1000)", 1000, lambda: store.labelled("bench", 1, 1000))
    timed("counts", 1, lambda: store.counts("bench"))
    timed("joined (all, pages of 10000)", total + 1, lambda: sum(map(len, store.joined("bench"))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default="sqlite", help="sqlite, or a postgresql:// URL")
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--batch", type=int, default=500)
    args = parser.parse_args()
    if args.store == "sqlite":
        with tempfile.TemporaryDirectory() as folder:
            store = SqliteEvaluationStore(Path(folder) / "evaluation.sqlite3")
            run(store, args.batches, args.batch)
            store.close()
        return
    import psycopg  # noqa: PLC0415 - only for PostgreSQL

    from serval.storage.postgres_evaluation import PostgresEvaluationStore  # noqa: PLC0415

    schema = f"serval_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(args.store, autocommit=True) as connection:
        connection.execute(f"CREATE SCHEMA {schema}")
    try:
        separator = "&" if "?" in args.store else "?"
        url = f"{args.store}{separator}options={quote(f'-c search_path={schema}')}"
        store = PostgresEvaluationStore(url)
        run(store, args.batches, args.batch)
        store.close()
    finally:
        with psycopg.connect(args.store, autocommit=True) as connection:
            connection.execute(f"DROP SCHEMA {schema} CASCADE")


if __name__ == "__main__":
    main()
