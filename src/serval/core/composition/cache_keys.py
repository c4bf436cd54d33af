"""The prediction cache's key of a request: a digest of everything that can change the answer
the model gives, so that two requests share an entry exactly when they would get the same
answer from the same version.

Covered: each input's name, datatype, shape and bytes (inputs in name order, so the order a
client lists them in does not matter; BYTES elements each with their length, so that
``["ab", "c"]`` and ``["a", "bc"]`` differ), the requested outputs with their parameters (in
the order asked: it is the order of the answer), and the request's parameters. Transport and
schedule parameters (``timeout``, ``priority``, ``binary_data_output``, ``cache``) never reach
the core (``protocols.oip.parameters``), so they split nothing. The model and the version are
not in the digest: a memory cache belongs to one version, and a shared store puts both in
front of it.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable, Collection

import numpy as np

from serval.core.types import InferenceRequest, Parameters, Tensor

DIGEST_SIZE = 16
_LENGTH = struct.Struct("<Q")

Update = Callable[[bytes | memoryview], None]


def cache_key(request: InferenceRequest, inputs: Collection[str] | None = None) -> bytes:
    """The digest of ``request`` (``DIGEST_SIZE`` bytes); ``inputs``: only those inputs count
    (the ``cache.inputs`` of model.yaml), None: every input."""
    digest = hashlib.blake2b(digest_size=DIGEST_SIZE)
    update = digest.update
    tensors = request.inputs
    if len(tensors) > 1:
        tensors = sorted(tensors, key=_name)
    for tensor in tensors:
        if inputs is not None and tensor.name not in inputs:
            continue
        _add_tensor(update, tensor)
    update(b"\x00outputs")
    if request.outputs is not None:
        for output in request.outputs:
            _add_text(update, output.name)
            if output.parameters:
                _add_parameters(update, output.parameters)
    update(b"\x00parameters")
    if request.parameters:
        _add_parameters(update, request.parameters)
    return digest.digest()


def _name(tensor: Tensor) -> str:
    return tensor.name


def _add_text(update: Update, text: str) -> None:
    data = text.encode()
    update(_LENGTH.pack(len(data)) + data)


def _add_tensor(update: Update, tensor: Tensor) -> None:
    data = tensor.data
    header = f"{tensor.name}\x00{tensor.datatype.value}\x00{data.shape}".encode()
    update(_LENGTH.pack(len(header)) + header)
    if data.dtype == np.object_:
        for item in data.reshape(-1):
            value = item if isinstance(item, bytes) else str(item).encode()
            update(_LENGTH.pack(len(value)) + value)
    else:
        update(np.ascontiguousarray(data).data)


def _add_parameters(update: Update, parameters: Parameters) -> None:
    for name in sorted(parameters):
        value = parameters[name]
        # The type counts: 1, 1.0, True and "1" are different parameters to a model.
        _add_text(update, f"{name}\x00{type(value).__name__}\x00{value!r}")
