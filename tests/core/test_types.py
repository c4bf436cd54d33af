"""Core types: deriving a request for a wrapped servable."""

from __future__ import annotations

import dataclasses

import numpy as np

from serval.core.records import RequestRecord
from serval.core.tensors.datatypes import DataType
from serval.core.types import InferenceRequest, RequestedOutput, Tensor


async def _gone() -> None:
    return None


def test_with_tensors_changes_inputs_and_outputs_and_shares_every_other_field() -> None:
    x = Tensor("x", DataType.FP32, np.zeros(2, np.float32))
    key = Tensor("k", DataType.INT64, np.zeros(2, np.int64))
    request = InferenceRequest(
        "m",
        [x, key],
        model_version="3",
        id="r1",
        parameters={"p": 1},
        outputs=[RequestedOutput("y"), RequestedOutput("k")],
        record=RequestRecord("rest_v2", "POST /v2", "m", 0),
        deadline=12.5,
        priority=2,
        client_gone=_gone,
        routing_key="user-7",
        cache=False,
        content_type="pd",
    )
    derived = request.with_tensors([x], [RequestedOutput("y")])
    assert derived.inputs == [x]
    assert derived.outputs == [RequestedOutput("y")]
    assert request.inputs == [x, key]  # the original is left as it is
    changed = {"inputs", "outputs"}
    for field in dataclasses.fields(InferenceRequest):  # a new field must be carried over too
        if field.name not in changed:
            assert getattr(derived, field.name) is getattr(request, field.name), field.name
