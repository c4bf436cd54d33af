"""What protocol adapters report about each inference request, for metrics and traces.

An adapter times each inference request with local variables and reports it once, when it
ends::

    started, decoded, inferred, response, error = time.perf_counter_ns(), 0, 0, None, None
    try:
        request = decode(...)
        decoded = time.perf_counter_ns()
        response = await dataplane.infer(request)
        inferred = time.perf_counter_ns()
        body = encode(response)
    except BaseException as exc:
        error = exc
        raise
    finally:
        observer.finished("rest_v2", OPERATION, name, started, decoded, inferred, response,
                          error, request.headers if observer.wants_trace_context else None)

Only the adapter sees the protocol, decoding and encoding, the whole request's time, and the
failures that happen before the data plane chooses a version; the rest it learns from the core
without asking: a response names the version that answered and carries its timings, and a
``ServalError`` raised after the data plane chose a version names it (``error.servable``).
``finished`` hands the facts to each recorder (metrics, tracing); with no recorder it returns
at once. Nothing else happens on the request's path: a few ``perf_counter_ns()`` calls and one
call at the end.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from typing import Protocol

from serval.core.errors import ErrorCode, ServalError
from serval.core.types import InferenceResponse, InferenceTimings

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
    ErrorCode.UNAUTHENTICATED: "client_error",
    ErrorCode.PERMISSION_DENIED: "client_error",
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
    """Consumes finished inference requests (metrics, tracing). The facts come as arguments,
    not as an object: the metrics' common case needs none (``ObservedRequest(*facts)`` builds
    one)."""

    @property
    def wants_trace_context(self) -> bool:
        """Whether adapters should pass the request's headers (``traceparent``)."""
        ...

    def request_finished(
        self,
        protocol: str,
        operation: str,
        model: str,
        started_ns: int,
        decoded_ns: int,
        inferred_ns: int,
        finished_ns: int,
        response: InferenceResponse | None,
        error: BaseException | None,
        trace_headers: Mapping[str, str] | None,
    ) -> None: ...


class ObservedRequest:
    """One finished inference request as its adapter saw it, and the version that answered."""

    __slots__ = (
        "decoded_ns",
        "error",
        "finished_ns",
        "inferred_ns",
        "model",
        "operation",
        "outcome",
        "protocol",
        "started_ns",
        "timings",
        "trace_headers",
        "version",
    )

    def __init__(
        self,
        protocol: str,
        operation: str,
        model: str,
        started_ns: int,
        decoded_ns: int,
        inferred_ns: int,
        finished_ns: int,
        response: InferenceResponse | None,
        error: BaseException | None,
        trace_headers: Mapping[str, str] | None = None,
    ) -> None:
        self.protocol = protocol  # rest_v2, rest_v1, grpc
        self.operation = operation  # the route or RPC, without client values
        self.model = model  # as the client named it: never a label unless the server knows it
        self.started_ns = started_ns  # time.perf_counter_ns(); 0: the step was not reached
        self.decoded_ns = decoded_ns
        self.inferred_ns = inferred_ns
        self.finished_ns = finished_ns
        self.trace_headers = trace_headers  # W3C trace context, only when tracing is on
        self.error = error
        self.outcome = SUCCESS if error is None else outcome_of(error)
        # (model, version) that answered, when known: names from the server, never the client.
        self.version: tuple[str, str] | None = None
        self.timings: InferenceTimings | None = None
        if response is not None:
            self.version = (response.model_name, response.model_version or "")
            self.timings = response.timings
        elif error is not None:
            servable = getattr(error, "servable", None)
            if servable is not None:
                self.version = (servable.name, str(servable.version))


class RequestObserver:
    """What adapters report inference requests to; built by the composition root with the
    recorders the settings ask for."""

    def __init__(self, recorders: Sequence[RequestRecorder] = ()) -> None:
        self._recorders = tuple(recorders)
        self.enabled = bool(self._recorders)
        # Whether adapters should pass the request's headers or metadata (traceparent).
        self.wants_trace_context = any(r.wants_trace_context for r in self._recorders)

    def finished(
        self,
        protocol: str,
        operation: str,
        model: str,
        started_ns: int,
        decoded_ns: int,
        inferred_ns: int,
        response: InferenceResponse | None,
        error: BaseException | None,
        trace_headers: Mapping[str, str] | None = None,
    ) -> None:
        """An inference request ended: ``response`` when it succeeded, else ``error``."""
        if not self.enabled:
            return
        finished_ns = time.perf_counter_ns()
        for recorder in self._recorders:
            recorder.request_finished(
                protocol,
                operation,
                model,
                started_ns,
                decoded_ns,
                inferred_ns,
                finished_ns,
                response,
                error,
                trace_headers,
            )
