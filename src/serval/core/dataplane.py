"""The data plane: liveness, readiness, metadata and inference, whatever the protocol.

A request's version is chosen by routing (``core.routing``: the version or label it names,
else its model's traffic policy) from the manager's snapshot of the model, then leased from
the manager as a handle that the request holds until it is answered, on every path. When the
policy names shadow versions, the answered request is copied to them off the request path
(``core.shadow``). Feedback on answers is matched to the version that answered by request id
(``core.feedback_ledger``), its ground truth kept by the recorder of evaluated models
(``core.feedback.GroundTruthRecorder``), and handed to the event bus.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from serval.core.deadlines import predict_by_deadline
from serval.core.errors import (
    DeadlineExceededError,
    ModelExecutionError,
    ModelNotFoundError,
    ServalError,
)
from serval.core.events import EventBus, PredictionEvent
from serval.core.feedback import Feedback, FeedbackItem, GroundTruthRecorder
from serval.core.feedback_ledger import AnswerLedger
from serval.core.lifecycle.handles import ServableHandle, Workload
from serval.core.lifecycle.manager import LifecycleManager
from serval.core.lifecycle.states import ServableId, ServableStatus
from serval.core.model_spec import ModelSpec
from serval.core.records import RequestRecord, record_statistics
from serval.core.routing.policy import parse_version
from serval.core.routing.router import Router
from serval.core.routing.shadow import ShadowStatistics
from serval.core.shadow import ShadowedHandle, ShadowRunner
from serval.core.statistics import VersionStatistics
from serval.core.tensors.content_types import apply_content_types, mark_response
from serval.core.tensors.validation import validate_request
from serval.core.types import InferenceRequest, InferenceResponse, ModelMetadata


@dataclass(frozen=True, slots=True)
class ServerMetadata:
    name: str
    version: str
    extensions: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Readiness:
    ready: bool
    reason: str = ""
    # What is degraded without stopping service (an unreachable evaluation store): said in
    # the readiness body, never a reason to be unready.
    degraded: tuple[str, ...] = ()
    # Shutting down: not ready on purpose, while requests are still answered.
    draining: bool = False


DRAINING_REASON = "draining: the server is shutting down"


@dataclass(frozen=True, slots=True)
class ModelConfigView:
    """What Triton's model configuration extension reports: the spec and the metadata."""

    metadata: ModelMetadata
    spec: ModelSpec


__all__ = [
    "DRAINING_REASON",
    "DataPlane",
    "ModelConfigView",
    "Readiness",
    "ServerMetadata",
    "parse_version",
]


class DataPlane:
    def __init__(
        self,
        manager: LifecycleManager,
        events: EventBus,
        server: ServerMetadata,
        router: Router | None = None,
        *,
        shadows: ShadowRunner | None = None,
        ledger: AnswerLedger | None = None,
        ground_truth: GroundTruthRecorder | None = None,
        degraded: Sequence[Callable[[], str | None]] = (),
    ) -> None:
        """``shadows`` runs shadow copies (default: at most 8 in flight); ``ledger``
        remembers which version answered each request id (default: an hour, a million
        ids); ``ground_truth`` keeps the ground truth of evaluated models (default: none
        kept, feedback is only an event); ``degraded``: each says what is degraded, or
        None (readiness reports it)."""
        self._manager = manager
        self._router = router if router is not None else Router()
        self._events = events
        self._server = server
        self._live = True
        self._draining = False
        self._shadows = shadows if shadows is not None else ShadowRunner(manager, events)
        self._ledger = ledger if ledger is not None else AnswerLedger()
        self._ground_truth = ground_truth
        self._degraded = tuple(degraded)
        events.on_request(record_statistics)
        events.on_request(self._ledger.on_request)

    def live(self) -> bool:
        return self._live

    def ready(self) -> Readiness:
        degraded = tuple(note for note in (check() for check in self._degraded) if note)
        if self._draining:
            return Readiness(False, DRAINING_REASON, degraded, draining=True)
        ready, reason = self._manager.readiness()
        return Readiness(ready, reason, degraded)

    def begin_draining(self) -> None:
        """Report not ready from now on (the server, and every model to health checks),
        so load balancers stop sending requests; inference goes on answering."""
        self._draining = True

    @property
    def draining(self) -> bool:
        return self._draining

    def server_metadata(self) -> ServerMetadata:
        return self._server

    def model_ready(self, name: str, version: str | int | None = None) -> bool:
        return self._manager.model_ready(name, parse_version(version))

    def why_not_ready(self, name: str, version: str | int | None = None) -> str:
        """Why ``model_ready`` says no (e.g. the step of a pipeline whose model is missing)."""
        return self._manager.why_not_ready(name, parse_version(version))

    def model_metadata(
        self, name: str, version: str | int | None = None, label: str | None = None
    ) -> ModelMetadata:
        asked = None if version is None else str(version)
        handle = self.lease(InferenceRequest(name, [], model_version=asked), label)
        try:
            metadata = handle.metadata
        finally:
            handle.release()
        return ModelMetadata(
            name=name,
            versions=tuple(str(v) for v in self._manager.serving_versions(name)),
            platform=metadata.platform,
            inputs=metadata.inputs,
            outputs=metadata.outputs,
            signatures=metadata.signatures,
            parameters=metadata.parameters,
            signature_specs=metadata.signature_specs,
            requires_signature=metadata.requires_signature,
        )

    def model_config(self, name: str, version: str | int | None = None) -> ModelConfigView:
        return ModelConfigView(self.model_metadata(name, version), self._manager.spec(name))

    def model_spec(self, name: str) -> ModelSpec:
        """The model's configuration (model.yaml, or a load request's override)."""
        return self._manager.spec(name)

    def model_status(self, name: str, version: str | int | None = None) -> list[ServableStatus]:
        statuses = self._manager.statuses(name)
        wanted = parse_version(version)
        if wanted is not None:
            statuses = [s for s in statuses if s.id.version == wanted]
            if not statuses:
                raise ModelNotFoundError(f"model {name!r} has no version {wanted}")
        return statuses

    def label_version(self, name: str, label: str) -> int:
        """The version a TF Serving label points at."""
        version = self._manager.spec(name).labels.get(label)
        if version is None:
            raise ModelNotFoundError(f"model {name!r} has no version label {label!r}")
        return version

    def model_names(self) -> list[str]:
        return self._manager.model_names()

    def workload(self) -> dict[ServableId, Workload]:
        """The requests on each serving or draining version now (for gauges)."""
        return self._manager.workload()

    def statistics(
        self, name: str | None = None, version: str | int | None = None
    ) -> list[VersionStatistics]:
        return self._manager.statistics(name, parse_version(version))

    def lease(self, request: InferenceRequest, label: str | None = None) -> ServableHandle:
        """Choose the version for ``request`` (the version or ``label`` it names, else its
        model's traffic policy) and lease it. For an adapter that needs the version before it
        can decode the request (TF Serving V1 decodes by the version's metadata): decode under
        the handle, then ``infer(request, handle=handle)``; release it (``async with``)."""
        snapshot = self._manager.snapshot(request.model_name)
        choice = self._router.choose(request, snapshot, label)
        handle = self._manager.lease(snapshot.name, choice.primary)
        return ShadowedHandle(handle, choice.shadows) if choice.shadows else handle

    async def infer(
        self,
        request: InferenceRequest,
        label: str | None = None,
        *,
        handle: ServableHandle | None = None,
    ) -> InferenceResponse:
        """Answer ``request``: on ``handle`` when the caller leased it (and releases it), else
        on a version chosen and leased here and released before this returns."""
        if handle is None:  # self.lease(request, label), inlined: this is the hot path
            snapshot = self._manager.snapshot(request.model_name)
            choice = self._router.choose(request, snapshot, label)
            managed = self._manager.lease(snapshot.name, choice.primary)
            shadows = choice.shadows
        else:
            managed = handle
            shadows = handle.shadows if isinstance(handle, ShadowedHandle) else ()
        started = time.perf_counter_ns()
        response: InferenceResponse | None = None
        error: Exception | None = None
        try:
            servable = managed.servable
            content_type = request.content_type
            if content_type is not None:  # MLServer's codec markers
                apply_content_types(request, servable.metadata)
            validate_request(request, servable.metadata)
            response = await predict_by_deadline(servable, request)
            if content_type is not None:
                mark_response(response, content_type)
        except ServalError as exc:
            exc.servable = managed.id
            error = exc
            raise
        except Exception as exc:
            failure = ModelExecutionError(
                f"model {managed.id.name!r} version {managed.id.version} failed: "
                f"{type(exc).__name__}: {exc}"
            )
            failure.servable = managed.id
            error = failure
            raise failure from exc
        except asyncio.CancelledError:
            # The caller gave up (a deadline or a dropped connection): a failure all the same.
            error = DeadlineExceededError(
                f"request to model {managed.id.name!r} was cancelled before it finished"
            )
            raise
        finally:
            if handle is None:
                managed.release()
            ended = time.perf_counter_ns()
            self._record(request, managed.id, managed.stats, response, error, started, ended)
            wanted = self._events.wanted_by(request)
            if wanted is not None:
                event = PredictionEvent(managed.id, request, response, error, ended - started)
                self._events.emit_prediction(event, wanted)
        response.model_name = managed.id.name
        response.model_version = str(managed.id.version)
        response.id = request.id
        if shadows:  # copies run after the answer is returned, in tasks of their own
            self._shadows.submit(request, response, managed.id, shadows)
        return response

    def shadow_statistics(self, name: str) -> dict[int, ShadowStatistics]:
        """What the shadow versions of ``name`` have shown so far (version -> counters)."""
        return self._shadows.book.statistics(name)

    async def feedback(self, name: str, items: Sequence[FeedbackItem]) -> tuple[int, int]:
        """Take each item of feedback on ``name``'s answers: match it to the version that
        answered its request id when that is still remembered, have the recorder keep its
        ground truth durably (evaluated models), then hand it to the event bus. Returns
        (accepted, matched): how many items were joined to an answer, by the ledger or by
        the recorder (a logged prediction). ``ModelNotFoundError`` for a model the server
        does not know; ``InvalidInputError`` naming the id for ground truth that cannot label
        its prediction (nothing is taken then); an unknown id is not an error (unmatched)."""
        self._manager.statuses(name)  # raises for an unknown model
        received = time.time()
        answered = self._ledger.answered
        recorder = self._ground_truth
        feedback: list[Feedback] = []
        for item in items:
            answer = None if item.request_id is None else answered(name, item.request_id)
            servable, rows = (None, 0) if answer is None else answer
            one = Feedback(
                name,
                item.request_id,
                servable,
                received,
                item.reward,
                item.ground_truth,
                key=item.key,
                rows=rows,
            )
            if recorder is not None and one.ground_truth is not None:
                recorder.check(one)
            feedback.append(one)
        joined = 0
        if recorder is not None:
            truths = [one for one in feedback if one.ground_truth is not None]
            if truths:
                joined = (await recorder.record(name, truths)) or 0
        for one in feedback:
            self._events.emit_feedback(one)
        # An item is matched when the ledger remembers its id, or the recorder joined it to a
        # logged prediction (by key, or by an id answered before a restart): the larger count.
        matched = max(sum(one.matched for one in feedback), joined)
        return len(feedback), matched

    async def close(self) -> None:
        """Stop the shadow copies in flight (the server stops): before models unload, so
        that no copy holds a lease that unloading would wait for."""
        await self._shadows.close()

    def _record(
        self,
        request: InferenceRequest,
        servable: ServableId,
        statistics: VersionStatistics,
        response: InferenceResponse | None,
        error: Exception | None,
        started: int,
        ended: int,
    ) -> None:
        """Fill in the request's record; emit it if no adapter will (an in-process caller)."""
        record = request.record
        owned = record is None
        if record is None:
            record = RequestRecord("", "", request.model_name, started)
        record.decoded_ns = started
        record.inferred_ns = ended
        record.servable = servable
        record.statistics = statistics
        record.request_id = request.id
        record.rows = request.rows
        if response is not None:
            record.timings = response.timings
        if owned:
            record.finished_ns = ended
            record.error = error
            self._events.emit_request(record)

    @property
    def sticky_headers(self) -> Mapping[str, str]:
        """Model -> the (lower-case) header holding its traffic policy's sticky key. The same
        mapping for the server's life, changed in place: an adapter keeps it, and for each
        request tests it for emptiness, then puts that header's value on
        ``InferenceRequest.routing_key`` for the models it names."""
        return self._router.sticky_headers

    @property
    def wants_headers(self) -> bool:
        """Whether adapters should attach the request's headers to its record (tracing)."""
        return self._events.wants_headers

    def finish(self, record: RequestRecord, error: BaseException | None = None) -> None:
        """An adapter's request ended (``error``: why it failed): stamp and emit its record,
        once. Adapters call it on every path, failures before decoding included."""
        record.finished_ns = time.perf_counter_ns()
        if error is not None:
            record.error = error
        self._events.emit_request(record)
