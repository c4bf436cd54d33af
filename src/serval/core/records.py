"""One record per inference request: what statistics, metrics, tracing and (later) the
prediction log learn about it, built once and emitted once on the ``EventBus``.

An adapter begins the record when a request arrives (``RequestRecord(protocol, operation,
model, started_ns)``), hangs it on the ``InferenceRequest`` it decodes, and hands it back to the
data plane when the request ends (``DataPlane.finish(record, error)``), which stamps the end
and emits it. The data plane fills in what only it knows while it runs the request: the version
that answered, its timings, the rows, the request id. A request the data plane gets without a
record (an in-process caller) gets one there, emitted when ``infer`` returns. So every request
is reported exactly once, whichever way it came, and no one guesses at another's facts.

Timestamps are ``time.perf_counter_ns()``; 0 means the step was not reached.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from serval.core.timings import InferenceTimings

if TYPE_CHECKING:
    from serval.core.lifecycle.states import ServableId
    from serval.core.statistics import VersionStatistics


class RequestRecord:
    """One inference request, from its adapter receiving it to its response encoded. Read-only
    for subscribers by convention; a slotted class, not a dataclass: built once per request."""

    __slots__ = (
        "decoded_ns",
        "error",
        "finished_ns",
        "headers",
        "inferred_ns",
        "model",
        "operation",
        "protocol",
        "request_id",
        "role",
        "rows",
        "servable",
        "started_ns",
        "statistics",
        "timings",
    )

    def __init__(self, protocol: str, operation: str, model: str, started_ns: int) -> None:
        self.protocol = protocol  # rest_v2, rest_v1, grpc; "" for an in-process caller
        self.operation = operation  # the route or RPC, without client values
        self.model = model  # as the client named it: never a label unless the server knows it
        self.started_ns = started_ns  # the adapter received the request
        self.decoded_ns = 0  # the data plane received it (decoded)
        self.inferred_ns = 0  # the data plane answered it
        self.finished_ns = 0  # the response was encoded, or the request failed
        # The version that answered (or failed), and its statistics: set by the data plane
        # once it chose one; None for a request that failed before.
        self.servable: ServableId | None = None
        self.statistics: VersionStatistics | None = None
        self.request_id: str | None = None  # InferenceRequest.id: the join key for feedback
        # "primary": the answer the client gets; "shadow": a copy a traffic policy sent to
        # another version, whose answer is compared and never returned.
        self.role = "primary"
        self.timings: InferenceTimings | None = None  # the servable's, on success
        self.rows = 0  # batch elements the request carried (its inputs' first dimension)
        self.error: BaseException | None = None  # why it failed; None: it succeeded
        # The request's transport headers or metadata (W3C trace context), only when a
        # subscriber asked for them (``EventBus.wants_headers``).
        self.headers: Mapping[str, str] | None = None


def record_statistics(record: RequestRecord) -> None:
    """Account ``record`` to the version that answered it (a request that failed before the
    data plane chose a version belongs to none). The duration is the data plane's: Triton's
    statistics leave out the protocol's decoding and encoding."""
    statistics = record.statistics
    if statistics is None:
        return
    duration = record.inferred_ns - record.decoded_ns
    timings = record.timings
    if record.error is None and timings is not None:
        statistics.record_success(duration, timings, record.rows)
    else:
        statistics.record_failure(duration)
