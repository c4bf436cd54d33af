"""One Redis (the server's ``--redis-url``, or a precomputed store's own URL) shared by every
layer that talks to it: every exchange bounded in time, every failure a
``LookupUnavailableError``, and a Redis that is down costing a request nothing (no network
until a backoff has passed, then one request probes)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError

from serval.core.composition.stores import LookupUnavailableError

log = logging.getLogger(__name__)

T = TypeVar("T")

FIRST_BACKOFF_S = 0.5
MAX_BACKOFF_S = 5.0


def describe_url(url: str) -> str:
    """``url`` without its user, password or query (which may hold a password)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # IPv6
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port is not None else host
    return f"{parts.scheme}://{netloc}{parts.path}"


class RedisConnection:
    """A ``redis.asyncio`` client made on first use (on the loop that uses it) and the state
    of the current outage, if any."""

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._url = url
        self._timeout_s = timeout_s
        self._clock = clock
        self._client: aioredis.Redis | None = None
        # The outage: why (None while Redis answers), the current backoff and when the
        # next probe may go; ``_probing`` while one request is that probe.
        self._down_reason: str | None = None
        self._backoff_s = 0.0
        self._retry_at = 0.0
        self._probing = False

    def describe(self) -> str:
        return describe_url(self._url)

    @property
    def down(self) -> bool:
        """Whether the last exchange failed (the outage has not ended)."""
        return self._down_reason is not None

    @property
    def down_reason(self) -> str | None:
        """Why the last exchange failed, while the outage lasts."""
        return self._down_reason

    async def run(self, operation: Callable[[aioredis.Redis], Awaitable[T]]) -> T:
        """``operation`` on the client, within about twice the timeout; raises
        ``LookupUnavailableError`` (why) when Redis is down, slow or refuses."""
        probe = False
        if self._down_reason is not None:
            if self._probing or self._clock() < self._retry_at:
                raise LookupUnavailableError(
                    f"redis {self.describe()} is unreachable ({self._down_reason})"
                )
            probe = self._probing = True
        try:
            # redis-py's socket timeouts bound each read and connect; this bounds the whole
            # exchange (a connect then a command, a reply trickling in).
            async with asyncio.timeout(2 * self._timeout_s):
                result = await operation(self._connected())
        except ResponseError as exc:
            # Redis answered, with an error (a wrong type at a key): not an outage.
            raise LookupUnavailableError(f"redis {self.describe()}: {exc}") from exc
        except (RedisError, OSError, TimeoutError) as exc:
            reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            self._failed(reason, probe=probe)
            raise LookupUnavailableError(f"redis {self.describe()}: {reason}") from exc
        finally:
            if probe:
                self._probing = False
        if self._down_reason is not None:
            log.info("redis %s answers again", self.describe())
            self._down_reason = None
            self._backoff_s = 0.0
        return result

    def _connected(self) -> aioredis.Redis:
        if self._client is None:
            self._client = aioredis.Redis.from_url(
                self._url,
                socket_timeout=self._timeout_s,
                socket_connect_timeout=self._timeout_s,
                # A pooled connection that a Redis restart cut fails on first use: one
                # immediate retry on a new connection hides the restart from the request.
                # Nothing more (a Redis that is down is this class's backoff's business).
                retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
            )
        return self._client

    def _failed(self, reason: str, *, probe: bool) -> None:
        if self._down_reason is None:
            log.warning(
                "redis %s is unreachable (%s): lookups fail fast until it answers again",
                self.describe(),
                reason,
            )
            self._backoff_s = FIRST_BACKOFF_S
        elif probe:
            self._backoff_s = min(self._backoff_s * 2, MAX_BACKOFF_S)
        else:
            # A call that went out before the outage began: the backoff is the probes'.
            self._down_reason = reason
            return
        self._down_reason = reason
        self._retry_at = self._clock() + self._backoff_s

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                await client.aclose()
            except (RedisError, OSError) as exc:  # closing a connection to a Redis gone away
                log.debug("closing redis %s: %s", self.describe(), exc)
