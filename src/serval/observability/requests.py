"""What protocol adapters report about each inference request, for metrics and traces.

An adapter brackets each inference request::

    observed = observer.start("rest_v2", "POST /v2/models/{model}/infer", name, carrier)
    try:
        request = decode(...)
        observed.decoded(request)          # attaches itself as request.context
        response = await dataplane.infer(request)
        observed.inferred()
        body = encode(response)
    except BaseException as exc:
        observed.finish(exc)
        raise
    observed.finish()

Timestamps are ``time.perf_counter_ns()`` integers; nothing else happens on the hot path.
The core knows nothing of this: it hands ``request.context`` on in its ``PredictionEvent``, and
``RequestObserver.on_prediction`` copies the version that answered and its timings into the
``ObservedRequest``. When the request finishes, each recorder (metrics, tracing) reads it.
With no recorder, ``start`` returns a shared do-nothing request.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from typing import Protocol

from serval.core.errors import ErrorCode, ServalError
from serval.core.events import PredictionEvent
from serval.core.states import ServableId
from serval.core.types import InferenceRequest, InferenceTimings

SUCCESS = "success"
# Outcomes, the values of the ``outcome`` label: bounded, whatever the client sends.
OUTCOMES: dict[ErrorCode, str] = {
    ErrorCode.INVALID_ARGUMENT: "client_error",
    ErrorCode.FAILED_PRECONDITION: "client_error",
    ErrorCode.PAYLOAD_TOO_LARGE: "client_error",
    ErrorCode.UNIMPLEMENTED: "client_error",
    ErrorCode.NOT_FOUND: "unknown_model",
    ErrorCode.UNAVAILABLE: "unavailable",
    ErrorCode.RESOURCE_EXHAUSTED: "overloaded",
    ErrorCode.DEADLINE_EXCEEDED: "timeout",
    ErrorCode.INTERNAL: "server_error",
}


def outcome_of(error: BaseException | None) -> str:
    if error is None:
        return SUCCESS
    if isinstance(error, ServalError):
        return OUTCOMES.get(error.code, "server_error")
    if isinstance(error, asyncio.CancelledError):
        return "cancelled"
    return "server_error"


class RequestRecorder(Protocol):
    """Consumes observed requests (metrics, tracing)."""

    @property
    def wants_trace_context(self) -> bool:
        """Whether ``start`` should read ``traceparent`` and the wall clock."""
        ...

    def request_started(self, request: ObservedRequest) -> None: ...

    def request_finished(self, request: ObservedRequest) -> None: ...


class ObservedRequest:
    """One inference request as its adapter saw it, plus what the core reported back."""

    __slots__ = (
        "_recorders",
        "decoded_ns",
        "error",
        "finished_ns",
        "inferred_ns",
        "model",
        "operation",
        "outcome",
        "protocol",
        "servable",
        "started_ns",
        "timings",
        "trace_headers",
        "wall_start_ns",
    )

    def __init__(
        self,
        recorders: Sequence[RequestRecorder],
        protocol: str,
        operation: str,
        model: str,
        trace_headers: Mapping[str, str] | None,
    ) -> None:
        self._recorders = recorders
        self.protocol = protocol  # rest_v2, rest_v1, grpc
        self.operation = operation  # the route or RPC, without client values
        self.model = model  # as the client named it: never a label unless the server knows it
        self.trace_headers = trace_headers  # W3C trace context, only when tracing is on
        self.wall_start_ns = time.time_ns() if trace_headers is not None else 0
        self.started_ns = time.perf_counter_ns()
        self.decoded_ns = 0
        self.inferred_ns = 0
        self.finished_ns = 0
        self.servable: ServableId | None = None  # the version that answered, once known
        self.timings: InferenceTimings | None = None
        self.error: BaseException | None = None
        self.outcome = ""
        for recorder in recorders:
            recorder.request_started(self)

    def decoded(self, request: InferenceRequest) -> None:
        self.decoded_ns = time.perf_counter_ns()
        request.context = self

    def inferred(self) -> None:
        self.inferred_ns = time.perf_counter_ns()

    def finish(self, error: BaseException | None = None) -> None:
        self.finished_ns = time.perf_counter_ns()
        self.error = error
        self.outcome = outcome_of(error)
        for recorder in self._recorders:
            recorder.request_finished(self)

    def wall_ns(self, perf_ns: int) -> int:
        """A ``perf_counter_ns`` timestamp of this request as ``time.time_ns()``."""
        return self.wall_start_ns + (perf_ns - self.started_ns)


class _NoRequest(ObservedRequest):
    """What ``start`` returns when nothing records: every call does nothing."""

    __slots__ = ()

    def __init__(self) -> None:
        super().__init__((), "", "", "", None)

    def decoded(self, request: InferenceRequest) -> None:
        pass

    def inferred(self) -> None:
        pass

    def finish(self, error: BaseException | None = None) -> None:
        pass


_NO_REQUEST = _NoRequest()


class RequestObserver:
    """Hands adapters an ``ObservedRequest`` per inference request; built by the composition
    root with the recorders the settings ask for."""

    def __init__(self, recorders: Sequence[RequestRecorder] = ()) -> None:
        self._recorders = tuple(recorders)
        self.enabled = bool(self._recorders)
        self.wants_trace_context = any(r.wants_trace_context for r in self._recorders)

    def start(
        self,
        protocol: str,
        operation: str,
        model: str,
        trace_headers: Mapping[str, str] | None = None,
    ) -> ObservedRequest:
        """``trace_headers``: the request's headers or metadata, when ``wants_trace_context``."""
        if not self.enabled:
            return _NO_REQUEST
        if trace_headers is None and self.wants_trace_context:
            trace_headers = {}
        return ObservedRequest(self._recorders, protocol, operation, model, trace_headers)

    def on_prediction(self, event: PredictionEvent) -> None:
        """Subscribed to the event bus: what the core adds to the adapter's observation."""
        observed = event.request.context
        if isinstance(observed, ObservedRequest):
            observed.servable = event.id
            if event.response is not None:
                observed.timings = event.response.timings
