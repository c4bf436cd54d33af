"""Coverage-guided fuzzing of the binary tensor decoder with atheris (libFuzzer for Python).

Three ways in, chosen by the first input byte:

* a whole REST body with the binary tensor data extension (``v2_codec.decode_infer_request``),
  its ``Inference-Header-Content-Length`` taken from the input;
* a JSON header built from the input (names, datatypes, shapes, ``binary_data_size``) followed
  by the input's remaining bytes, so that the fuzzer reaches the raw decoding quickly;
* ``core.tensors.raw.decode_raw`` directly, with a datatype and shape from the input.

Anything but a ``ServalError`` (serval's 400s and friends) is a finding: libFuzzer stops,
prints the traceback and writes the input to ``crash-<sha1>``. Run by hand (docs/fuzzing.md)::

    pip install -e '.[fuzz]'
    PYTHONPATH=src python fuzz/binary_decoder.py -atheris_runs=100000
    PYTHONPATH=src python fuzz/binary_decoder.py -max_total_time=600 fuzz/corpus/

and replay a finding with ``python fuzz/binary_decoder.py crash-<sha1>``.
"""

from __future__ import annotations

import contextlib
import json
import sys

import atheris

with atheris.instrument_imports(include=["serval"]):
    from serval.core.errors import ServalError
    from serval.core.tensors.datatypes import DataType
    from serval.core.tensors.raw import decode_raw
    from serval.protocols.rest.v2_codec import decode_infer_request

DATATYPES = [datatype.value for datatype in DataType]
# Dimensions worth reaching: small ones, and ones at the limits of 32 and 64 bits.
BIG_DIMENSIONS = [2**31 - 1, 2**31, 2**32, 2**62, 2**63 - 1, 2**63, 2**64]


def _dimension(data: atheris.FuzzedDataProvider) -> int:
    if data.ConsumeIntInRange(0, 7) == 0:
        return int(data.PickValueInList(BIG_DIMENSIONS))
    return int(data.ConsumeIntInRange(0, 8))


def _shape(data: atheris.FuzzedDataProvider) -> list[int]:
    return [_dimension(data) for _ in range(data.ConsumeIntInRange(0, 4))]


def _whole_body(data: atheris.FuzzedDataProvider) -> None:
    header_length = str(data.ConsumeIntInRange(0, 4096)) if data.ConsumeBool() else None
    decode_infer_request(data.ConsumeBytes(sys.maxsize), header_length, "m", None)


def _built_header(data: atheris.FuzzedDataProvider) -> None:
    inputs = []
    for index in range(data.ConsumeIntInRange(1, 3)):
        size = data.ConsumeIntInRange(-1, 64)
        inputs.append(
            {
                "name": f"x{index}",
                "datatype": data.PickValueInList(DATATYPES),
                "shape": _shape(data),
                "parameters": {"binary_data_size": size},
            }
        )
    header = json.dumps({"inputs": inputs}).encode()
    length = len(header) + data.ConsumeIntInRange(-2, 2)
    decode_infer_request(header + data.ConsumeBytes(sys.maxsize), str(length), "m", None)


def _raw(data: atheris.FuzzedDataProvider) -> None:
    datatype = DataType(data.PickValueInList(DATATYPES))
    shape = _shape(data)
    decode_raw(data.ConsumeBytes(sys.maxsize), datatype, shape, "x")


TARGETS = (_whole_body, _built_header, _raw)


def test_one_input(raw: bytes) -> None:
    data = atheris.FuzzedDataProvider(raw)
    target = TARGETS[data.ConsumeIntInRange(0, len(TARGETS) - 1)]
    # A ServalError is a client mistake answered with its status: what a decoder should do.
    with contextlib.suppress(ServalError):
        target(data)


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
