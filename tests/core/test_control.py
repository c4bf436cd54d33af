"""The control plane's checks of load parameters: one place for every protocol."""

from __future__ import annotations

from typing import Any

import pytest

from serval.core.control import load_config
from serval.core.errors import InvalidInputError


@pytest.mark.parametrize(
    ("parameters", "config"),
    [
        ({}, None),
        ({"config": '{"max_batch_size": 4}'}, {"max_batch_size": 4}),
        ({"config": b'{"max_batch_size": 4}'}, {"max_batch_size": 4}),  # gRPC bytes_param
        ({"other": 1}, None),
    ],
)
def test_config_parameter(parameters: dict[str, Any], config: dict[str, Any] | None) -> None:
    assert load_config(parameters) == config


@pytest.mark.parametrize(
    ("parameters", "words"),
    [
        ({"file:1/model.onnx": "AAAA"}, "file overrides are not supported"),
        ({"config": "{", "file:1/a": b"x", "file:1/b": b"y"}, "file:1/a, file:1/b"),
        ({"config": "{oops"}, "'config' is not valid JSON"),
        ({"config": "[]"}, "must be a JSON object, received list"),
        ({"config": 4}, "must be a JSON object in a string, received int"),
        ({"config": b"\xff"}, "not UTF-8"),
    ],
)
def test_bad_load_parameters_are_client_errors(parameters: dict[str, Any], words: str) -> None:
    with pytest.raises(InvalidInputError, match=words):
        load_config(parameters)
