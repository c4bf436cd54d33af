"""Numbers from clients are ASCII digits: ``str.isdigit()`` also accepts '²' (and a header's
latin-1 byte 0xB2 decodes to it), which ``int()`` then refuses; that was a 500."""

from __future__ import annotations

import numpy as np
import pytest

from serval.core.dataplane import parse_version
from serval.core.errors import InvalidInputError
from serval.core.tensors.datatypes import DataType
from serval.core.types import InferenceRequest, Tensor
from serval.protocols.rest.body import check_declared_length
from serval.protocols.rest.schedule_headers import apply_schedule_headers
from serval.protocols.rest.v1 import _PREDICT, _STATUS
from serval.protocols.rest.v2_codec import decode_infer_request

NOT_ASCII_DIGITS = ["²", "①", "٣", "1²"]


@pytest.mark.parametrize("text", NOT_ASCII_DIGITS)
def test_a_version_must_be_ascii_digits(text: str) -> None:
    with pytest.raises(InvalidInputError, match="positive integer"):
        parse_version(text)


@pytest.mark.parametrize("text", NOT_ASCII_DIGITS)
@pytest.mark.parametrize("header", ["timeout", "priority"])
def test_schedule_headers_must_be_ascii_digits(text: str, header: str) -> None:
    request = InferenceRequest("m", [Tensor("x", DataType.FP32, np.zeros(1, np.float32))])
    values = {"timeout": None, "priority": None, header: text}
    with pytest.raises(InvalidInputError, match=header):
        apply_schedule_headers(request, values["timeout"], values["priority"])


@pytest.mark.parametrize("text", NOT_ASCII_DIGITS)
def test_header_lengths_must_be_ascii_digits(text: str) -> None:
    with pytest.raises(InvalidInputError, match="Inference-Header-Content-Length"):
        decode_infer_request(b'{"inputs": []}', text, "m", None)
    with pytest.raises(InvalidInputError, match="Content-Length"):
        check_declared_length(text, 1024)


@pytest.mark.parametrize("text", NOT_ASCII_DIGITS)
def test_v1_versions_match_ascii_digits_only(text: str) -> None:
    assert _PREDICT.match(f"m/versions/{text}:predict") is None
    assert _STATUS.match(f"m/versions/{text}") is None
    assert _STATUS.match("m/VERSIONS/12/Metadata") is not None  # still case-insensitive
