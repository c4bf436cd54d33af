"""Batch assembly: the rows of a request, which requests may share a batch (batch_key), and
merge/split as a round trip."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from serval.core.batching.assembly import batch_key, batch_rows, merge, split
from serval.core.errors import InvalidInputError, ModelExecutionError
from serval.core.tensors.datatypes import DataType
from serval.core.types import InferenceRequest, RequestedOutput, Tensor

FP32, INT64 = DataType.FP32, DataType.INT64


def tensor(
    name: str, shape: tuple[int, ...], datatype: DataType = FP32, start: float = 0
) -> Tensor:
    count = int(np.prod(shape))
    data = (start + np.arange(count)).astype(datatype.numpy_dtype).reshape(shape)
    return Tensor(name, datatype, data)


def request(*inputs: Tensor, **fields: object) -> InferenceRequest:
    return InferenceRequest("m", list(inputs), **fields)  # type: ignore[arg-type]


# -- rows ---------------------------------------------------------------------------------------


def test_rows_are_the_shared_first_dimension() -> None:
    assert batch_rows(request(tensor("x", (3, 2)), tensor("n", (3,), INT64)), 8) == 3
    assert batch_rows(request(tensor("x", (8, 1))), 8) == 8
    assert batch_rows(request(), 8) == 0


def test_rows_beyond_max_batch_size_are_refused() -> None:
    with pytest.raises(InvalidInputError) as caught:
        batch_rows(request(tensor("x", (9, 1))), 8)
    assert caught.value.message == (
        "the request has 9 rows; model 'm' runs at most max_batch_size=8 rows at once"
    )


def test_inputs_that_disagree_on_rows_are_named() -> None:
    with pytest.raises(InvalidInputError) as caught:
        batch_rows(request(tensor("x", (3, 2)), tensor("n", (2,), INT64)), 8)
    assert caught.value.message == (
        "inputs of model 'm' share their first (batch) dimension: input 'x' has 3 rows, 'n' has 2"
    )


def test_a_scalar_input_has_no_batch_dimension() -> None:
    scalar = Tensor("s", FP32, np.array(1.0, np.float32))
    with pytest.raises(InvalidInputError, match="input 's' is a scalar; model 'm' batches"):
        batch_rows(request(scalar), 8)


# -- batch keys ---------------------------------------------------------------------------------


def test_rows_and_input_order_do_not_change_the_key() -> None:
    one = request(tensor("x", (1, 4)), tensor("n", (1,), INT64))
    many = request(tensor("n", (7,), INT64), tensor("x", (7, 4)))
    assert batch_key(one) == batch_key(many)
    assert hash(batch_key(one)) == hash(batch_key(many))


@pytest.mark.parametrize(
    "other",
    [
        request(tensor("x", (1, 5))),  # another trailing shape
        request(tensor("x", (1, 4), DataType.FP64)),  # another datatype
        request(tensor("y", (1, 4))),  # another input
        request(tensor("x", (1, 4)), tensor("n", (1,), INT64)),  # one more input
        request(tensor("x", (1, 4)), outputs=[RequestedOutput("z")]),  # an output selection
        request(tensor("x", (1, 4)), parameters={"signature": "explain"}),  # a model parameter
    ],
)
def test_what_the_model_computes_differently_changes_the_key(other: InferenceRequest) -> None:
    assert batch_key(request(tensor("x", (1, 4)))) != batch_key(other)


def test_the_row_count_does_not_change_the_key() -> None:
    # Transport and schedule parameters (binary_data, timeout, priority) never reach the core:
    # the adapters take them off while decoding (protocols/oip/parameters.py, tested there).
    one_row = request(tensor("x", (1, 4)), outputs=[RequestedOutput("y")])
    two_rows = request(tensor("x", (2, 4)), outputs=[RequestedOutput("y")])
    assert batch_key(one_row) == batch_key(two_rows)


def test_an_empty_output_selection_is_not_all_outputs() -> None:
    assert batch_key(request(tensor("x", (1, 4)), outputs=[])) != batch_key(
        request(tensor("x", (1, 4)))
    )


# -- merge and split ------------------------------------------------------------------------------


def test_merge_keeps_the_first_requests_fields_and_stacks_rows_in_order() -> None:
    first = request(
        tensor("x", (1, 2), start=0),
        tensor("n", (1,), INT64, start=0),
        model_version="3",
        parameters={"signature": "s"},
        outputs=[RequestedOutput("y")],
    )
    second = request(tensor("n", (2,), INT64, start=10), tensor("x", (2, 2), start=10))
    merged = merge([first, second])
    assert [t.name for t in merged.inputs] == ["x", "n"]
    np.testing.assert_array_equal(merged.inputs[0].data, [[0, 1], [10, 11], [12, 13]])
    np.testing.assert_array_equal(merged.inputs[1].data, [0, 10, 11])
    assert merged.inputs[1].datatype is INT64
    assert merged.model_version == "3"
    assert merged.parameters == {"signature": "s"}
    assert merged.outputs == [RequestedOutput("y")]


def test_split_gives_views_with_the_outputs_parameters() -> None:
    output = Tensor("y", FP32, np.arange(6, dtype=np.float32).reshape(3, 2), {"p": 1})
    parts = split([output], [1, 2])
    assert [part[0].data.tolist() for part in parts] == [[[0, 1]], [[2, 3], [4, 5]]]
    assert all(np.shares_memory(part[0].data, output.data) for part in parts)
    assert all(part[0].parameters == {"p": 1} for part in parts)


@pytest.mark.parametrize(
    ("data", "shape"), [(np.zeros((2, 1), np.float32), "[2, 1]"), (np.array(1.0), "[]")]
)
def test_outputs_that_do_not_follow_the_batch_are_a_model_error(
    data: np.ndarray, shape: str
) -> None:
    with pytest.raises(ModelExecutionError) as caught:
        split([Tensor("y", FP32, data)], [1, 2])
    assert caught.value.message == (
        f"output 'y' has shape {shape}; for a batch of 3 rows its first dimension must be 3"
    )


@settings(max_examples=60, deadline=None)
@given(
    rows=st.lists(st.integers(min_value=0, max_value=5), min_size=1, max_size=8),
    width=st.integers(min_value=1, max_value=4),
    datatype=st.sampled_from([FP32, INT64, DataType.UINT8, DataType.BOOL, DataType.BYTES]),
)
def test_merge_then_split_gives_each_request_its_own_rows(
    rows: list[int], width: int, datatype: DataType
) -> None:
    requests = []
    for index, count in enumerate(rows):
        values = np.arange(count * width).reshape(count, width) + 100 * index
        if datatype is DataType.BYTES:
            data = np.array([[str(v).encode() for v in row] for row in values], np.object_)
            data = data.reshape(count, width)
        else:
            data = values.astype(datatype.numpy_dtype)
        requests.append(
            request(Tensor("x", datatype, data), Tensor("i", INT64, np.full(count, index)))
        )
    assert len({batch_key(r) for r in requests}) == 1
    merged = merge(requests)
    assert batch_rows(merged, sum(rows)) == sum(rows)
    # An identity model: the outputs are the merged inputs.
    parts = split(merged.inputs, rows)
    assert len(parts) == len(requests)
    for original, part in zip(requests, parts, strict=True):
        for sent, answered in zip(original.inputs, part, strict=True):
            assert answered.name == sent.name and answered.datatype is sent.datatype
            assert answered.data.shape == sent.data.shape
            np.testing.assert_array_equal(answered.data, sent.data)
