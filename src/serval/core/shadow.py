"""Shadow traffic: copies of answered requests sent to other versions of the same model, whose
answers are compared with the primary's and never returned.

A traffic policy names shadow versions in its ``Choice``; once the primary answer is ready the
data plane hands the request to ``ShadowRunner.submit``, which starts one background task per
shadow version and returns at once, so the client gets its answer without waiting. Each copy
is a fresh request (the same inputs, parameters and requested outputs, the same request id;
no deadline of the client's, the default priority) with a record of role ``"shadow"``, leased
from the manager like any request and released on every path. It runs on the shadow
version's own servable, so its share of the inference threads (its call slots) bounds what a
hung shadow can hold, and at most ``max_inflight`` copies are in flight at once over the whole
server: beyond that a copy is dropped and counted, never queued.

Every outcome lands in the ``ShadowBook`` (requests, errors, dropped, agreement, mean absolute
difference; see ``core.shadow_comparison``); the record goes on the event bus like any
request's, so statistics and metrics can tell shadows by their role.
"""

from __future__ import annotations

import asyncio
import time

from serval.core.errors import DeadlineExceededError, ModelExecutionError, ServalError
from serval.core.events import EventBus, PredictionEvent
from serval.core.lifecycle.handles import ServableHandle
from serval.core.lifecycle.manager import LifecycleManager
from serval.core.lifecycle.states import ServableId
from serval.core.records import RequestRecord
from serval.core.routing.shadow import ShadowBook
from serval.core.shadow_comparison import compare_answers
from serval.core.tensors.validation import validate_request
from serval.core.types import InferenceRequest, InferenceResponse

SHADOW = "shadow"
# Copies in flight over the whole server, per inference thread (the composition root
# multiplies): enough to keep a shadow version as busy as its primary at the primary's own
# concurrency, small enough that hung shadows hold little.
SHADOWS_PER_THREAD = 2
# How long stopping waits for the copies it cancelled to let go of their leases.
_CLOSE_WAIT_S = 1.0


class ShadowedHandle(ServableHandle):
    """A lease on the primary version that also carries the choice's shadow versions: what
    ``DataPlane.lease`` returns when the policy asked for shadows, so that an adapter that
    leases before it decodes (TF Serving V1) still gets them copied. It takes ``handle``'s
    lease over (no second count)."""

    __slots__ = ("shadows",)

    def __init__(self, handle: ServableHandle, shadows: tuple[int, ...]) -> None:
        self._managed = handle._managed
        handle._managed = None  # released through this handle from now on
        self.id = handle.id
        self.servable = handle.servable
        self.stats = handle.stats
        self.shadows = shadows


class ShadowRunner:
    """Runs shadow copies off the request path; used on the event loop only."""

    __slots__ = ("_book", "_events", "_manager", "_max_inflight", "_tasks")

    def __init__(
        self,
        manager: LifecycleManager,
        events: EventBus,
        book: ShadowBook | None = None,
        max_inflight: int = 8,
    ) -> None:
        if max_inflight < 1:
            raise ValueError(f"max_inflight must be at least 1, received {max_inflight}")
        self._manager = manager
        self._events = events
        self._book = book if book is not None else ShadowBook()
        self._max_inflight = max_inflight
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def book(self) -> ShadowBook:
        return self._book

    @property
    def inflight(self) -> int:
        """Copies started and not finished."""
        return len(self._tasks)

    def submit(
        self,
        request: InferenceRequest,
        response: InferenceResponse,
        servable: ServableId,
        shadows: tuple[int, ...],
    ) -> None:
        """Copy ``request``, answered by ``servable`` with ``response``, to each of
        ``shadows`` (a version equal to the primary's is skipped); returns at once."""
        model = servable.name
        for version in shadows:
            if version == servable.version:
                continue
            if len(self._tasks) >= self._max_inflight:
                self._book.of(model, version).dropped += 1
                continue
            copy = _copy(request, model, version)
            task = asyncio.get_running_loop().create_task(
                self._run(copy, response, version), name=f"serval-shadow-{model}-{version}"
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def close(self, wait_s: float = _CLOSE_WAIT_S) -> None:
        """Cancel the copies in flight and wait up to ``wait_s`` for them to release their
        leases (a copy whose model hangs keeps its thread, never the exit)."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=wait_s)

    async def _run(self, copy: InferenceRequest, primary: InferenceResponse, version: int) -> None:
        record = copy.record
        assert record is not None
        model = copy.model_name
        statistics = self._book.of(model, version)
        started = time.perf_counter_ns()
        record.decoded_ns = started
        record.request_id = copy.id
        record.rows = copy.rows
        answer: InferenceResponse | None = None
        error: BaseException | None = None
        try:
            answer = await self._predict(copy, version, record)
        except asyncio.CancelledError as exc:  # the server stops: not the shadow's fault
            error = exc
            raise
        except ServalError as exc:
            error = exc
        except Exception as exc:
            error = ModelExecutionError(
                f"shadow version {version} of model {model!r} failed: {type(exc).__name__}: {exc}"
            )
        finally:
            self._finish(copy, record, answer, error, started)
        statistics.requests += 1
        if answer is None:
            statistics.errors += 1
            return
        compare_answers(primary, answer).account(statistics)

    async def _predict(
        self, copy: InferenceRequest, version: int, record: RequestRecord
    ) -> InferenceResponse:
        record.servable = ServableId(copy.model_name, version)
        handle = self._manager.lease(copy.model_name, version)
        try:
            record.servable = handle.id
            record.statistics = handle.stats
            servable = handle.servable
            validate_request(copy, servable.metadata)
            return await servable.predict(copy)
        finally:
            handle.release()

    def _finish(
        self,
        copy: InferenceRequest,
        record: RequestRecord,
        answer: InferenceResponse | None,
        error: BaseException | None,
        started: int,
    ) -> None:
        """Emit the copy's record (and its prediction, if a subscriber wants it)."""
        ended = time.perf_counter_ns()
        record.inferred_ns = record.finished_ns = ended
        if isinstance(error, asyncio.CancelledError):
            error = DeadlineExceededError(
                f"shadow copy to model {copy.model_name!r} was cancelled: the server stops"
            )
        record.error = error
        if answer is not None:
            record.timings = answer.timings
        events = self._events
        events.emit_request(record)
        servable = record.servable
        wanted = events.wanted_by(copy) if servable is not None else None
        if servable is not None and wanted is not None:
            failure = error if isinstance(error, Exception) else None
            event = PredictionEvent(servable, copy, answer, failure, ended - started)
            events.emit_prediction(event, wanted)


def _copy(request: InferenceRequest, model: str, version: int) -> InferenceRequest:
    """A fresh request to ``version``: the same inputs, parameters, requested outputs and id;
    none of the client's deadline, priority or connection."""
    primary = request.record
    record = RequestRecord(
        primary.protocol if primary is not None else "",
        primary.operation if primary is not None else "",
        model,
        time.perf_counter_ns(),
    )
    record.role = SHADOW
    return InferenceRequest(
        model,
        request.inputs,
        model_version=str(version),
        id=request.id,
        parameters=request.parameters,
        outputs=request.outputs,
        record=record,
    )
