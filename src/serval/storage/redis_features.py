"""Online features in Redis hashes (``features: {store: redis}``): one hash per entity, one
field per feature, as a feature pipeline writes them (Feast's Redis online store, a Spark
job, ``HSET user:42 age 31 income 52000``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis

from serval.storage.redis_connection import RedisConnection


class RedisFeatureStore:
    """A ``FeatureStore`` over a shared connection: the hashes of a batch of rows in one
    pipelined round trip (one HMGET per key, no transaction). ``round_trips`` counts the
    pipelines sent."""

    def __init__(self, connection: RedisConnection) -> None:
        self._connection = connection
        self.round_trips = 0

    @property
    def connection(self) -> RedisConnection:
        """The (shared) connection it talks through."""
        return self._connection

    async def fetch(self, keys: Sequence[str], fields: Sequence[str]) -> list[list[bytes | None]]:
        if not keys:
            return []
        names = list(fields)

        async def hmget_each(client: aioredis.Redis) -> list[Any]:
            async with client.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.hmget(key, names)
                self.round_trips += 1
                return await pipe.execute()

        replies = await self._connection.run(hmget_each)
        return [[None if v is None else bytes(v) for v in reply] for reply in replies]
