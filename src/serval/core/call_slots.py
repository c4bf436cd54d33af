"""A model's share of the shared inference threads: at most ``limit`` of its calls run at once,
at most ``max_waiting`` more wait (on the event loop, holding no thread), the rest are refused
as overloaded. So one slow or hung model can never take every inference thread from the
others.

A slot is given back only when its thread returns: a call abandoned at its timeout or
deadline keeps its slot until the model lets go of the thread, so a hung model ends up
waiting on its own slots, never on the other models' threads.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from concurrent.futures import Future

from serval.core.errors import ClientGoneError, ModelExecutionError, OverloadedError
from serval.core.types import InferenceRequest


class CallSlots:
    """Used on the event loop, except ``release_when_done``'s callback."""

    __slots__ = ("_free", "_limit", "_max_waiting", "_waiters")

    def __init__(self, limit: int, max_waiting: int) -> None:
        self._limit = limit
        self._free = limit
        self._max_waiting = max_waiting
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def limit(self) -> int:
        return self._limit

    @property
    def running(self) -> int:
        return self._limit - self._free

    def try_acquire(self) -> bool:
        """Take a slot if one is free and nobody waits for one (the fast path)."""
        if self._free and not self._waiters:
            self._free -= 1
            return True
        return False

    async def acquire(self, request: InferenceRequest) -> None:
        """Wait for a slot; ``OverloadedError`` when too many wait, ``ClientGoneError`` when
        the request's client leaves first (its request then never runs)."""
        if self.try_acquire():
            return
        if len(self._waiters) >= self._max_waiting:
            raise OverloadedError(
                f"model {request.model_name!r} is running {self._limit} requests and "
                f"{len(self._waiters)} more are waiting; retry later",
                retry_after_s=1.0,
            )
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            if request.client_gone is None:
                await waiter
            else:
                await _unless_gone(waiter, request)
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self.release()  # the slot was ours already: hand it on
            else:
                waiter.cancel()
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            raise

    def release(self) -> None:
        """Give a slot back: to the first request still waiting, else to the free ones."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._free += 1

    def release_when_done(self, job: Future[object], loop: asyncio.AbstractEventLoop) -> None:
        """Release once ``job``'s thread has returned (now, if it has or never started)."""
        if job.done():
            self.release()
            return

        def returned(_: Future[object]) -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed: nobody needs the slot
                loop.call_soon_threadsafe(self.release)

        job.add_done_callback(returned)


async def _unless_gone(waiter: asyncio.Future[None], request: InferenceRequest) -> None:
    assert request.client_gone is not None
    gone = asyncio.ensure_future(request.client_gone())
    try:
        await asyncio.wait((waiter, gone), return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
    if not waiter.done():
        raise ClientGoneError(
            f"the client of a request to model {request.model_name!r} left while it waited"
        )


def escaped_model_error(exc: BaseException, model: str) -> ModelExecutionError:
    """A ``SystemExit``, ``KeyboardInterrupt`` or other ``BaseException`` that a model raised
    on an inference thread, as an error of the model: it must never reach the event loop,
    where it would stop the server."""
    return ModelExecutionError(
        f"model {model!r} raised {type(exc).__name__}{_args(exc)}; the server keeps running"
    )


def _args(exc: BaseException) -> str:
    return f"({exc.args[0]!r})" if exc.args else ""
