"""``--to``: each scored row's outputs written under its key to a precomputed-predictions
store (``serval.storage.precomputed``: the format, the writers and the server's reader)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pyarrow as pa

from serval.batch.errors import BatchInputError
from serval.batch.job import BatchJob
from serval.batch.model import BatchModel
from serval.batch.results import ERROR_COLUMN, MODEL_COLUMN, VERSION_COLUMN
from serval.storage.precomputed import (
    PrecomputedStore,
    encode_answer,
    key_text,
    open_precomputed_store,
)


class PrecomputedSink:
    """Writes the rows of result tables to ``store`` (one batched write per table); rows
    the model failed on (``--on-error skip``) are not written."""

    def __init__(
        self, store: PrecomputedStore, model: str, version: int, keys: tuple[str, ...]
    ) -> None:
        self._store = store
        self._model = model
        self._version = version
        self._keys = keys
        self.rows = 0

    def write(self, table: pa.Table) -> None:
        skip = {*self._keys, MODEL_COLUMN, VERSION_COLUMN, ERROR_COLUMN}
        outputs = {
            name: column_values(table.column(name))
            for name in table.column_names
            if name not in skip
        }
        keys = [table.column(key).to_pylist() for key in self._keys]
        failed = (
            np.asarray(table.column(ERROR_COLUMN).is_valid())
            if ERROR_COLUMN in table.column_names
            else None
        )
        # One time per table: the rows of a table were scored together.
        written_at = time.time()
        answers = (
            (
                key_text([column[row] for column in keys]),
                encode_answer(
                    self._model,
                    self._version,
                    {n: v[row] for n, v in outputs.items()},
                    written_at,
                ),
            )
            for row in range(table.num_rows)
            if failed is None or not failed[row]
        )
        self.rows += self._store.write(self._model, answers)

    def close(self) -> None:
        self._store.close()


def column_values(column: pa.ChunkedArray) -> np.ndarray[Any, Any]:
    """A result column as an array of rows: fixed-size lists become the trailing dimensions."""
    shape: list[int] = []
    kind = column.type
    array = column.combine_chunks()
    while pa.types.is_fixed_size_list(kind):
        shape.append(kind.list_size)
        array = array.flatten()
        kind = kind.value_type
    if pa.types.is_string(kind) or pa.types.is_binary(kind):
        values = np.empty(len(array), dtype=np.object_)
        values[:] = array.to_pylist()
    else:
        values = np.asarray(array.to_numpy(zero_copy_only=False))
    return values.reshape(len(column), *shape)


def open_precomputed_sink(job: BatchJob, model: BatchModel) -> PrecomputedSink | None:
    if job.to is None:
        return None
    try:
        store = open_precomputed_store(job.to, job.redis_prefix)
    except ImportError as exc:
        raise BatchInputError(
            f"--to {job.to}: {exc.name} is not installed (pip install 'serval-server[redis]')"
        ) from exc
    return PrecomputedSink(store, model.name, model.served_version, job.keys)
