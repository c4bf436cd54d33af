"""The precomputed-predictions format and its stores: what a batch job writes, the server's
single lookup reads back; against the machine's real Redis (db 15, a prefix of its own) and a
real SQLite file."""

from __future__ import annotations

import struct
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import redis

from serval.core.errors import InvalidInputError
from serval.storage.precomputed import (
    PrecomputedStore,
    RedisPrecomputedStore,
    decode_answer,
    encode_answer,
    key_text,
    open_precomputed_store,
)
from tests.redis_keys import redis_prefix

URL = "redis://127.0.0.1:6379/15"


@pytest.fixture
def prefix() -> Iterator[str]:
    with redis_prefix(URL) as prefix:
        yield prefix


def test_an_answer_round_trips_numbers_vectors_and_text() -> None:
    outputs = {
        "y": np.array([0.25, -1.5], np.float32),
        "score": np.array(3.5, np.float64),
        "label": np.array(b"dog", dtype=np.object_),
        "grid": np.arange(6, dtype=np.int64).reshape(2, 3),
    }
    record = encode_answer("clf", 7, outputs, 1_765_000_000.25)
    answer = decode_answer(record)
    assert (answer.model, answer.version, answer.written_at) == ("clf", 7, 1_765_000_000.25)
    assert list(answer.outputs) == list(outputs)
    for name, value in outputs.items():
        assert answer.outputs[name].dtype == value.dtype
        np.testing.assert_array_equal(answer.outputs[name], value)
    assert len(record) < 160  # 67 bytes of values: a few bytes of header per output
    with pytest.raises(ValueError, match="not a precomputed answer"):
        decode_answer(b"\x80\x04pickle")
    for cut in (6, 20, len(record) - 1):
        with pytest.raises(ValueError):
            decode_answer(record[:cut])


def test_a_record_without_a_time_says_now() -> None:
    before = time.time()
    answer = decode_answer(encode_answer("m", 1, {"y": np.zeros(1, np.float32)}))
    assert answer.written_at is not None and before <= answer.written_at <= time.time()


def test_records_of_the_first_version_still_decode_without_a_time() -> None:
    # SVP1, as the first writers wrote it: magic, model, version, then the outputs.
    record = (
        b"SVP1"
        + struct.pack("<H", 3)
        + b"clf"
        + struct.pack("<IH", 7, 2)
        + struct.pack("<H", 1)
        + b"y\x04FP32\x01"
        + struct.pack("<I2f", 2, 0.5, -1.0)
        + struct.pack("<H", 5)
        + b"label\x05BYTES\x00"
        + struct.pack("<I", 3)
        + b"dog"
    )
    answer = decode_answer(record)
    assert (answer.model, answer.version, answer.written_at) == ("clf", 7, None)
    np.testing.assert_array_equal(answer.outputs["y"], np.array([0.5, -1.0], np.float32))
    assert answer.outputs["label"].shape == () and answer.outputs["label"].item() == b"dog"


def test_key_text_is_the_same_from_a_column_value_and_a_tensor_value() -> None:
    assert key_text([42]) == key_text([np.int64(42)]) == "42"
    assert key_text(["u1"]) == key_text([b"u1"]) == "u1"
    assert key_text(["u1", 3]) == "u1\x1f3"


def check_store(store: PrecomputedStore) -> None:
    answers = [
        (f"k{i}", encode_answer("m", 2, {"y": np.array([i, i + 1], np.float32)})) for i in range(50)
    ]
    assert store.write("m", answers) == 50
    found = store.get("m", "k7")
    assert found is not None
    np.testing.assert_array_equal(found.outputs["y"], [7.0, 8.0])
    assert store.get("m", "missing") is None
    assert store.get("other", "k7") is None
    store.write("m", [("k7", encode_answer("m", 3, {"y": np.array([0.0, 0.0], np.float32)}))])
    replaced = store.get("m", "k7")
    assert replaced is not None and replaced.version == 3


def test_redis_store(prefix: str) -> None:
    store = open_precomputed_store(URL, prefix)
    assert isinstance(store, RedisPrecomputedStore)
    check_store(store)
    client = redis.Redis.from_url(URL)
    assert client.exists(f"{prefix}precomputed:m:k1")
    client.close()
    store.close()


def test_sqlite_store(tmp_path: Path) -> None:
    store = open_precomputed_store(f"sqlite:///{tmp_path}/pre/answers.db")
    check_store(store)
    store.close()
    assert (tmp_path / "pre" / "answers.db").is_file()


@pytest.mark.parametrize("url", ["sqlite://", "postgres://x/y", "answers.db"])
def test_a_store_url_it_cannot_use_is_named(url: str) -> None:
    with pytest.raises(InvalidInputError, match=f"--to {url}"):
        open_precomputed_store(url)
