"""Redis commands that requests ask for in the same turn of the event loop, sent together.

Under load many requests reach the cache in one turn of the loop (each connection's bytes are
read in one pass). Sending their lookups as one ``MGET``, and their stores as one pipeline of
``SET ... PX``, costs one exchange (and one round of redis-py's per-command work) per turn
instead of one per request: a request never takes more than one round trip, and usually a
share of one. A turn's batch is sent at the end of that turn (``loop.call_soon``), so a lone
request waits for nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from redis.asyncio import Redis

from serval.core.composition.stores import LookupUnavailableError
from serval.storage.redis_connection import RedisConnection

# At most this many keys in one MGET or pipeline (a bigger turn is sent in several).
MAX_BATCH = 256


class BatchedGets:
    """``get(name)``: the value of a key, fetched with the other keys asked in the same turn."""

    def __init__(self, connection: RedisConnection) -> None:
        self._connection = connection
        self._waiting: list[tuple[str, asyncio.Future[bytes | str | None]]] = []
        self._sending: set[asyncio.Task[None]] = set()

    async def get(self, name: str) -> bytes | str | None:
        """Raises ``LookupUnavailableError`` when Redis does not answer."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bytes | str | None] = loop.create_future()
        if not self._waiting:
            loop.call_soon(self._send_turn, loop)
        self._waiting.append((name, future))
        return await future

    def _send_turn(self, loop: asyncio.AbstractEventLoop) -> None:
        waiting, self._waiting = self._waiting, []
        for start in range(0, len(waiting), MAX_BATCH):
            task = loop.create_task(self._send(waiting[start : start + MAX_BATCH]))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    async def _send(self, batch: Sequence[tuple[str, asyncio.Future[bytes | str | None]]]) -> None:
        names = [name for name, _ in batch]
        try:
            values = await self._connection.run(lambda client: client.mget(names))
        except LookupUnavailableError as exc:
            for _, future in batch:
                if not future.done():  # a request that gave up has cancelled its own
                    future.set_exception(exc)
            return
        for (_, future), value in zip(batch, values, strict=True):
            if not future.done():
                future.set_result(value)


class BatchedSets:
    """``set(name, value)``: stored with a TTL in the background, with the other stores of
    the same turn in one pipeline. Never raises; ``on_failed(count)`` hears of the stores
    that were dropped (``max_pending`` waiting already) or failed."""

    def __init__(
        self,
        connection: RedisConnection,
        *,
        ttl_ms: int,
        max_pending: int,
        on_failed: Callable[[int], None],
    ) -> None:
        self._connection = connection
        self._ttl_ms = ttl_ms
        self._max_pending = max_pending
        self._on_failed = on_failed
        self._waiting: list[tuple[str, bytes]] = []
        self._in_flight = 0
        self._sending: set[asyncio.Task[None]] = set()

    @property
    def pending(self) -> int:
        """Stores not yet acknowledged by Redis."""
        return len(self._waiting) + self._in_flight

    def set(self, name: str, value: bytes) -> None:
        if self.pending >= self._max_pending:
            self._on_failed(1)
            return
        if not self._waiting:
            loop = asyncio.get_running_loop()  # RuntimeError without one: the caller's
            loop.call_soon(self._send_turn, loop)
        self._waiting.append((name, value))

    def _send_turn(self, loop: asyncio.AbstractEventLoop) -> None:
        waiting, self._waiting = self._waiting, []
        for start in range(0, len(waiting), MAX_BATCH):
            batch = waiting[start : start + MAX_BATCH]
            self._in_flight += len(batch)
            task = loop.create_task(self._send(batch))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    async def _send(self, batch: Sequence[tuple[str, bytes]]) -> None:
        try:
            await self._connection.run(lambda client: self._pipeline(client, batch))
        except LookupUnavailableError:  # the connection logged the outage
            self._on_failed(len(batch))
        finally:
            self._in_flight -= len(batch)

    async def _pipeline(self, client: Redis, batch: Sequence[tuple[str, bytes]]) -> list[object]:
        async with client.pipeline(transaction=False) as pipe:
            for name, value in batch:
                pipe.set(name, value, px=self._ttl_ms)
            result: list[object] = await pipe.execute()
            return result

    async def flush(self, timeout_s: float) -> None:
        """Send what waits now and wait (at most ``timeout_s``) for every store in flight."""
        if self._waiting:
            self._send_turn(asyncio.get_running_loop())
        if self._sending:
            await asyncio.wait(set(self._sending), timeout=timeout_s)
