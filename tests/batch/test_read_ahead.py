"""``read_ahead``: items in order from a producer thread, its error raised in order, and a
consumer that stops early lets the producer go."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from serval.batch.local import read_ahead


def test_items_come_in_order() -> None:
    assert list(read_ahead(iter(range(100)))) == list(range(100))


def test_an_error_of_the_producer_is_raised_after_the_items_before_it() -> None:
    def items() -> Iterator[int]:
        yield 1
        yield 2
        raise ValueError("corrupt file")

    seen = []
    with pytest.raises(ValueError, match="corrupt file"):
        for item in read_ahead(items()):
            seen.append(item)
    assert seen == [1, 2]


def test_stopping_early_stops_the_producer() -> None:
    reader = read_ahead(iter(range(1_000_000)), depth=2)
    assert next(reader) == 0
    reader.close()  # the producer sees the stop flag and returns
