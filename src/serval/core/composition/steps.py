"""One call of a composite model to another model: a step of a pipeline, a stage of a cascade,
a member of an ensemble.

Each call leases the model through the provider (so it follows the model's new versions as
they load, and unloading waits for it), validates the step's request against that version's
metadata, runs it on the version's own servable (its batching, instances and time limits
apply) and adds it to that version's statistics. Whatever goes wrong is said with the step's
name: a client mistake stays a client mistake, a crash is a ``ModelExecutionError``, a model
that is not there is ``ModelNotReadyError`` (the composite is not ready without it).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from serval.core.composition.provider import ServableLease, ServableProvider
from serval.core.errors import (
    ModelExecutionError,
    ModelNotFoundError,
    ModelNotReadyError,
    ServalError,
)
from serval.core.servable import QueuedRequest, SubmittingServable
from serval.core.specs.composite import ModelRef
from serval.core.tensors.validation import validate_request
from serval.core.types import (
    InferenceRequest,
    InferenceResponse,
    RequestedOutput,
    ServableMetadata,
    Tensor,
)


class StepCall:
    """Calls model ``ref`` for composite ``owner``; ``label`` names the step in errors, e.g.
    "pipeline 'p' step 'clf' (model 'classifier')"."""

    __slots__ = ("_name", "_trusted", "_version", "label", "provider", "ref")

    def __init__(self, provider: ServableProvider, ref: ModelRef, label: str) -> None:
        self.provider = provider
        self.ref = ref
        self.label = label
        self._name = ref.name
        self._version = None if ref.version is None else str(ref.version)
        self._trusted: ServableMetadata | None = None

    def trust(self, metadata: ServableMetadata) -> None:
        """The composite checked at load that what it sends this step always fits
        ``metadata`` (its inputs come from the request, already checked against the
        composite's narrower inputs): calls to a version with exactly this metadata skip the
        check. A new version (other metadata) is checked at each call."""
        self._trusted = metadata

    def metadata(self) -> ServableMetadata:
        """The metadata of the version a call would use now (read at load)."""
        lease = self._lease()
        try:
            return lease.servable.metadata
        finally:
            lease.release()

    async def __call__(
        self,
        parent: InferenceRequest,
        inputs: list[Tensor],
        outputs: list[RequestedOutput] | None = None,
    ) -> InferenceResponse:
        """Run ``inputs`` (asking for ``outputs``, None: all; never changed, so a caller may
        build it once) on the model, with ``parent``'s id, deadline, priority and client."""
        request = self._request(parent, inputs, outputs)
        lease = self._lease()
        started = time.perf_counter_ns()
        try:
            servable = lease.servable
            if servable.metadata is not self._trusted:
                validate_request(request, servable.metadata)
            response = await servable.predict(request)
        except ServalError as exc:
            lease.stats.record_failure(time.perf_counter_ns() - started)
            raise _named(exc, self.label) from exc
        except Exception as exc:
            lease.stats.record_failure(time.perf_counter_ns() - started)
            raise ModelExecutionError(f"{self.label} failed: {type(exc).__name__}: {exc}") from exc
        finally:
            lease.release()
        lease.stats.record_success(time.perf_counter_ns() - started, response.timings, request.rows)
        return response

    def start(
        self,
        parent: InferenceRequest,
        inputs: list[Tensor],
        outputs: list[RequestedOutput] | None = None,
    ) -> StartedCall:
        """Begin the call now, for a caller that begins several before awaiting any (the
        steps of one level, the members of an ensemble): a model with a queue
        (``SubmittingServable``) has the request in its queue when this returns, so calls
        begun together join the same batch and no task is made; any other model's call runs
        in a task. Await ``answer()`` of each, and ``cancel()`` each on every path."""
        lease = self._lease()
        servable = lease.servable
        submit = getattr(servable, "submit", None)
        if submit is None:  # no queue: the call runs in a task, which leases for itself
            lease.release()
            task = asyncio.get_running_loop().create_task(self(parent, inputs, outputs))
            return StartedCall(self, task)
        request = self._request(parent, inputs, outputs)
        started = time.perf_counter_ns()
        try:
            if servable.metadata is not self._trusted:
                validate_request(request, servable.metadata)
            entry = submit(request)
        except Exception as exc:
            lease.release()
            raise self._failed(lease, started, exc) from exc
        # It has submit, so it is a SubmittingServable (a getattr is cheaper than isinstance).
        return StartedCall(self, None, lease, servable, entry, request, started)  # type: ignore[arg-type]

    def _request(
        self,
        parent: InferenceRequest,
        inputs: list[Tensor],
        outputs: list[RequestedOutput] | None,
    ) -> InferenceRequest:
        return InferenceRequest(
            self._name,
            inputs,
            model_version=self._version,
            id=parent.id,
            outputs=outputs,
            deadline=parent.deadline,
            priority=parent.priority,
            client_gone=parent.client_gone,
        )

    def _failed(self, lease: ServableLease, started: int, exc: Exception) -> ServalError:
        """``exc`` of a call begun at ``started``, counted and said with the step's name."""
        lease.stats.record_failure(time.perf_counter_ns() - started)
        if isinstance(exc, ServalError):
            return _named(exc, self.label)
        return ModelExecutionError(f"{self.label} failed: {type(exc).__name__}: {exc}")

    def _lease(self) -> ServableLease:
        try:
            return self.provider.lease(self.ref.name, self.ref.version)
        except (ModelNotFoundError, ModelNotReadyError) as exc:
            raise ModelNotReadyError(
                f"{self.label} is not available: {exc.message}", retry_after_s=1.0
            ) from exc


def _named(exc: ServalError, label: str) -> ServalError:
    """``exc`` again (same class, so the same status), its message prefixed with the step."""
    message = f"{label}: {exc.message}"
    try:
        named = type(exc)(message, retry_after_s=exc.retry_after_s)
    except TypeError:  # a subclass with a constructor of its own
        named = ModelExecutionError(message)
    return named


class StartedCall:
    """A call that ``StepCall.start`` began: its request waits in the model's queue (``entry``,
    the call holding its lease) or runs in ``task``. ``answer()`` once; ``cancel()`` gives it
    up (another call failed first, the caller was cancelled) and is harmless once answered."""

    __slots__ = ("_call", "_entry", "_lease", "_open", "_request", "_servable", "_started", "_task")

    def __init__(
        self,
        call: StepCall,
        task: asyncio.Task[InferenceResponse] | None,
        lease: ServableLease | None = None,
        servable: SubmittingServable | None = None,
        entry: QueuedRequest | None = None,
        request: InferenceRequest | None = None,
        started: int = 0,
    ) -> None:
        self._call = call
        self._task = task
        self._lease = lease
        self._servable = servable
        self._entry = entry
        self._request = request
        self._started = started
        self._open = True

    async def answer(self) -> InferenceResponse:
        task = self._task
        if task is not None:
            return await task  # StepCall.__call__ in the task counts and names as it goes
        lease, servable, entry = self._lease, self._servable, self._entry
        assert lease is not None and servable is not None and entry is not None
        assert self._request is not None
        try:
            response = await entry.future
        except Exception as exc:
            raise self._call._failed(lease, self._started, exc) from exc
        finally:
            self._open = False
            servable.withdraw(entry)
            lease.release()
        lease.stats.record_success(
            time.perf_counter_ns() - self._started, response.timings, self._request.rows
        )
        return response

    def cancel(self) -> None:
        if not self._open:
            return
        self._open = False
        task = self._task
        if task is not None:
            if not task.done():
                task.cancel()
            elif not task.cancelled():
                task.exception()  # a second failure is dropped on purpose, not lost
            return
        entry, servable, lease = self._entry, self._servable, self._lease
        assert servable is not None and entry is not None and lease is not None
        future = entry.future
        if future.done() and not future.cancelled():  # it ran: its statistics say how
            took = time.perf_counter_ns() - self._started
            error = future.exception()  # read: a second failure is dropped on purpose
            if error is None:
                assert self._request is not None
                lease.stats.record_success(took, future.result().timings, self._request.rows)
            else:
                lease.stats.record_failure(took)
        servable.withdraw(entry)
        lease.release()


# A call to begin: the step, its inputs, the outputs asked of it (None: all).
Begun = tuple[StepCall, list[Tensor], list[RequestedOutput] | None]


async def together(parent: InferenceRequest, calls: Sequence[Begun]) -> list[InferenceResponse]:
    """The answers of ``calls`` (step, inputs, outputs asked), in order, all begun before any
    is awaited: each but the last by ``StepCall.start`` (no task for a model with a queue),
    the last awaited here (it joins its queue before this first waits). On the first failure
    the others are given up and it is raised (the step that failed is the one the client
    hears of); so are they all when the caller is cancelled (a deadline)."""
    started: list[StartedCall] = []
    try:
        for step, inputs, outputs in calls[:-1]:
            started.append(step.start(parent, inputs, outputs))
        step, inputs, outputs = calls[-1]
        last = await step(parent, inputs, outputs)
        return [*[await begun.answer() for begun in started], last]
    finally:
        for begun in started:
            begun.cancel()  # a no-op for those answered
