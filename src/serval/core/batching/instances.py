"""A model's instances: concurrent executions of one predictor, each on a thread.

A batch is one hop to a free instance thread, where the inputs are merged, the predictor runs
once and the outputs are split back; each request is then answered on the event loop with its
rows and its own timings. Instances share the one queue, so whichever is free takes the next
batch: no instance is ever picked over an idle one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial

from serval.core.batching.assembly import merge, split
from serval.core.batching.request_queue import Waiting
from serval.core.call_slots import escaped_model_error
from serval.core.servable import Predictor
from serval.core.types import InferenceRequest, InferenceResponse, InferenceTimings, Tensor


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one execution produced, measured on the instance thread."""

    started_ns: int
    response: InferenceResponse
    parts: list[list[Tensor]]  # each request's outputs
    merge_ns: int = 0
    split_ns: int = 0


class InstancePool:
    """``count`` instances of ``predictor``, each a thread of ``executor`` (by default a pool
    of its own with exactly that many threads, so a batch never waits behind other work).
    Used on the event loop."""

    def __init__(self, predictor: Predictor, count: int, executor: Executor | None = None) -> None:
        self._predictor = predictor
        self._count = count
        self._owns_executor = executor is None
        self._executor = executor or ThreadPoolExecutor(count, thread_name_prefix="serval-instance")
        self._busy = 0

    @property
    def busy(self) -> int:
        """Instances running a batch now."""
        return self._busy

    @property
    def free(self) -> bool:
        return self._busy < self._count

    def run(
        self,
        requests: Sequence[InferenceRequest],
        rows: Sequence[int],
        on_done: Callable[[asyncio.Future[Outcome]], None],
    ) -> None:
        """Run one batch (each request's ``rows``) on a free instance; ``on_done`` gets its
        outcome on the loop, once the instance counts as free again."""
        self._busy += 1
        loop = asyncio.get_running_loop()
        done = loop.run_in_executor(self._executor, execute, self._predictor, requests, rows)
        done.add_done_callback(partial(self._finished, on_done))

    def _finished(
        self, on_done: Callable[[asyncio.Future[Outcome]], None], done: asyncio.Future[Outcome]
    ) -> None:
        self._busy -= 1
        on_done(done)

    async def close(self) -> None:
        """Close the predictor (after the running batches when there is one instance), then
        this pool's own threads."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._predictor.close)
        if self._owns_executor:
            self._executor.shutdown(wait=False)


def execute(
    predictor: Predictor, requests: Sequence[InferenceRequest], rows: Sequence[int]
) -> Outcome:
    """One batch on the calling (instance) thread; a lone request runs as it is, unmerged."""
    try:
        return _execute(predictor, requests, rows)
    except Exception:
        raise
    except GeneratorExit:
        raise
    except BaseException as exc:  # SystemExit & co. must not reach the event loop
        raise escaped_model_error(exc, requests[0].model_name) from exc


def _execute(
    predictor: Predictor, requests: Sequence[InferenceRequest], rows: Sequence[int]
) -> Outcome:
    started = time.perf_counter_ns()
    if len(requests) == 1:
        response = predictor.predict(requests[0])
        return Outcome(started, response, [response.outputs])
    merged = merge(requests)
    merged_at = time.perf_counter_ns()
    response = predictor.predict(merged)
    predicted_at = time.perf_counter_ns()
    parts = split(response.outputs, rows)
    return Outcome(
        started,
        response,
        parts,
        merge_ns=merged_at - started,
        split_ns=time.perf_counter_ns() - predicted_at,
    )


def answer(batch: list[Waiting], outcome: Outcome, *, batched: bool) -> None:
    """Give each request of ``batch`` still waiting for it its outputs and timings (``batched``:
    the model batches, so the batch size is the rows run together)."""
    response = outcome.response
    ran = response.timings
    batch_size = sum(item.rows for item in batch) if batched else ran.batch_size
    accounted = False  # one answered request accounts for the execution
    for item, outputs in zip(batch, outcome.parts, strict=True):
        if item.future.done():
            continue
        timings = InferenceTimings(
            queue_ns=outcome.started_ns - item.enqueued_ns,
            compute_input_ns=ran.compute_input_ns + outcome.merge_ns,
            compute_infer_ns=ran.compute_infer_ns,
            compute_output_ns=ran.compute_output_ns + outcome.split_ns,
            batch_size=batch_size,
            queued_at_ns=item.enqueued_ns,
            executions=0 if accounted else 1,
        )
        accounted = True
        if len(batch) == 1:
            response.timings = timings
            item.future.set_result(response)
            continue
        item.future.set_result(
            InferenceResponse(
                response.model_name,
                outputs,
                model_version=response.model_version,
                parameters=dict(response.parameters),
                timings=timings,
            )
        )
