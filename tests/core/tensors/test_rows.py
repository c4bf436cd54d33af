"""Row helpers: counting rows, checking alignment, taking rows."""

from __future__ import annotations

import numpy as np
import pytest

from serval.core.errors import InvalidInputError
from serval.core.tensors.datatypes import DataType
from serval.core.tensors.rows import check_rows, row_count, take_rows
from serval.core.types import Tensor


def tensor(name: str, data: list[object] | int) -> Tensor:
    return Tensor.from_numpy(name, np.array(data))


def test_row_count_is_the_first_dimension_and_none_for_a_scalar() -> None:
    assert row_count(tensor("a", [[1, 2], [3, 4], [5, 6]])) == 3
    assert row_count(tensor("a", 7)) is None


def test_check_rows_names_the_tensor_that_does_not_fit() -> None:
    x = tensor("x", [[1, 2], [3, 4]])
    check_rows([tensor("a", [1, 2]), tensor("b", [[1], [2]])], x)
    with pytest.raises(InvalidInputError) as caught:
        check_rows([tensor("a", [1, 2]), tensor("b", [1])], x, "key")
    assert caught.value.message == (
        "key 'b' has 1 row, but input 'x' has 2: a key has one value per row"
    )
    with pytest.raises(InvalidInputError, match=r"tensor 's' has no rows \(it is a scalar\)"):
        check_rows([tensor("s", 1)], x)
    with pytest.raises(InvalidInputError, match=r"'b' has 3 rows, but key 'a' has 2"):
        check_rows([tensor("b", [1, 2, 3])], tensor("a", [1, 2]), "key", "key")


def test_take_rows_selects_and_reorders_without_touching_the_original() -> None:
    ids = Tensor("id", DataType.BYTES, np.array([b"a", b"b", b"c"], object))
    taken = take_rows(ids, [2, 0])
    assert (taken.name, taken.datatype) == ("id", DataType.BYTES)
    assert taken.data.tolist() == [b"c", b"a"]
    assert ids.data.tolist() == [b"a", b"b", b"c"]
    matrix = tensor("m", [[1, 2], [3, 4], [5, 6]])
    assert take_rows(matrix, np.array([1])).data.tolist() == [[3, 4]]
