"""Spilled records as JSON lines (``serval.storage.spill``): one object a line, ``"t"`` saying
which record it is (``"p"``: a logged prediction, ``"g"``: ground truth). Bytes fields are
text when they are UTF-8 (the tensor log and ground truth are orjson output), else
``{"b64": ...}``."""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from serval.storage.evaluation import GroundTruth, LoggedPrediction

logger = logging.getLogger(__name__)

SpilledRecord = LoggedPrediction | GroundTruth


def _bytes_out(value: bytes) -> str | dict[str, str]:
    """Text when it is UTF-8 (the tensor log and ground truth are orjson output), else
    base64."""
    try:
        return value.decode()
    except UnicodeDecodeError:
        return {"b64": base64.b64encode(value).decode()}


def _bytes_in(value: Any) -> bytes:
    if isinstance(value, dict):
        return base64.b64decode(value["b64"])
    return str(value).encode()


def encode_record(record: SpilledRecord) -> dict[str, Any]:
    if isinstance(record, LoggedPrediction):
        return {
            "t": "p",
            "model": record.model,
            "version": record.version,
            "request_id": record.request_id,
            "timestamp": record.timestamp,
            "role": record.role,
            "latency_ms": record.latency_ms,
            "rows": record.rows,
            "keys": None if record.keys is None else list(record.keys),
            "inputs": _bytes_out(record.inputs),
            "outputs": _bytes_out(record.outputs),
        }
    return {
        "t": "g",
        "model": record.model,
        "request_id": record.request_id,
        "key": record.key,
        "value": _bytes_out(record.value),
        "received": record.received,
    }


def _decode(document: dict[str, Any]) -> SpilledRecord:
    if document["t"] == "p":
        keys = document["keys"]
        return LoggedPrediction(
            model=document["model"],
            version=int(document["version"]),
            request_id=document["request_id"],
            timestamp=float(document["timestamp"]),
            role="shadow" if document["role"] == "shadow" else "primary",
            latency_ms=float(document["latency_ms"]),
            rows=int(document["rows"]),
            keys=None if keys is None else tuple(keys),
            inputs=_bytes_in(document["inputs"]),
            outputs=_bytes_in(document["outputs"]),
        )
    return GroundTruth(
        model=document["model"],
        request_id=document["request_id"],
        key=document["key"],
        value=_bytes_in(document["value"]),
        received=float(document["received"]),
    )


def decode_lines(path: Path, lines: list[bytes]) -> Iterator[SpilledRecord]:
    """The records of ``lines``; a line that is not one (the tail of a write cut short by a
    crash) is logged and skipped, so it never blocks the rest."""
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            yield _decode(orjson.loads(line))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            logger.warning("%s line %d: not a spilled record, skipped (%s)", path, number, exc)
