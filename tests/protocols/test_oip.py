"""What REST and gRPC share: Triton's transport and schedule parameters, index states."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from serval.core.errors import InvalidInputError
from serval.core.lifecycle.states import ServableState
from serval.core.tensors.datatypes import DataType
from serval.core.types import InferenceRequest, ParameterValue, Tensor
from serval.protocols.oip.parameters import take_binary_data, take_request_parameters
from serval.protocols.oip.repository import index_state


def request(parameters: dict[str, ParameterValue]) -> InferenceRequest:
    x = Tensor("x", DataType.FP32, np.zeros(1, np.float32))
    return InferenceRequest("m", [x], parameters=parameters)


def test_timeout_and_priority_parameters_become_the_deadline_and_priority() -> None:
    plain = request({})
    assert take_request_parameters(plain, {}) is False
    assert (plain.deadline, plain.priority) == (None, 0)

    parameters: dict[str, ParameterValue] = {"timeout": 2_500_000, "priority": 2, "k": 1}
    timed = request(parameters)
    take_request_parameters(timed, parameters, now=100.0)
    assert timed.deadline == pytest.approx(102.5)
    assert timed.priority == 2
    assert timed.parameters == {"k": 1}  # the model sees its own parameters only

    parameters = {"timeout": 0}
    no_timeout = request(parameters)
    take_request_parameters(no_timeout, parameters, now=100.0)
    assert no_timeout.deadline is None

    parameters = {"timeout": 5_000_000}
    earlier = request(parameters)
    earlier.deadline = 101.0  # e.g. a gRPC deadline
    take_request_parameters(earlier, parameters, now=100.0)
    assert earlier.deadline == 101.0


@pytest.mark.parametrize(
    "parameters",
    [{"timeout": -1}, {"timeout": 1.5}, {"timeout": "10"}, {"priority": True}, {"priority": -2}],
)
def test_bad_schedule_parameters_are_client_errors(parameters: dict[str, Any]) -> None:
    with pytest.raises(InvalidInputError, match="non-negative integer"):
        take_request_parameters(request(parameters), parameters)


def test_transport_parameters_are_taken_off_the_request() -> None:
    parameters: dict[str, ParameterValue] = {
        "binary_data_output": True,
        "headers": "x",
        "signature": "s",
    }
    req = request(parameters)
    assert take_request_parameters(req, parameters) is True
    assert req.parameters == {"signature": "s"}
    output: dict[str, ParameterValue] = {"binary_data": False, "classification": 2}
    assert take_binary_data(output) is False
    assert output == {"classification": 2}
    assert take_binary_data({}) is None


def test_index_states_are_tritons() -> None:
    assert index_state(ServableState.AVAILABLE) == "READY"
    assert index_state(ServableState.LOADING) == "LOADING"
    assert index_state(ServableState.UNLOADING) == "UNLOADING"
    assert index_state(ServableState.START) == "UNAVAILABLE"
    assert index_state(ServableState.END) == "UNAVAILABLE"


def test_the_cache_parameter_is_taken_off_into_the_request() -> None:
    parameters: dict[str, ParameterValue] = {"cache": False, "k": 1}
    skip = request(parameters)
    take_request_parameters(skip, parameters)
    assert skip.cache is False
    assert skip.parameters == {"k": 1}  # so it splits no batch and no cache key
    parameters = {"cache": "no"}
    with pytest.raises(InvalidInputError, match="parameter 'cache': expected true or false"):
        take_request_parameters(request(parameters), parameters)
