"""Bandit arms shared by replicas in Redis (``--redis-url``): one hash per bandit,
``<prefix>bandit:<model>:<digest of its bandit section>`` (a changed policy starts afresh; the
same policy on every replica, or after a restart, goes on), fields ``<version>:pulls``,
``<version>:rewards`` and ``<version>:reward_sum``, added to atomically (HINCRBY,
HINCRBYFLOAT) and read back whole. A hash no replica touched for ``EXPIRE_S`` goes away."""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from serval.core.routing.bandit_store import ArmCounts

_TIMEOUT_S = 0.5  # a store slower than this is treated as unreachable for that exchange
EXPIRE_S = 30 * 86400


class RedisBanditStore:
    """A ``BanditStore`` over redis-py's asyncio client."""

    def __init__(self, url: str, *, prefix: str = "serval:") -> None:
        self._url = url
        self._prefix = prefix
        self._client = aioredis.Redis.from_url(
            url,
            socket_timeout=_TIMEOUT_S,
            socket_connect_timeout=_TIMEOUT_S,
            decode_responses=True,
        )

    def key(self, bandit: str) -> str:
        return f"{self._prefix}bandit:{bandit}"

    def describe(self) -> str:
        parts = urlsplit(self._url)
        host = parts.hostname or "localhost"
        return f"redis://{host}:{parts.port or 6379}"  # never the password

    async def exchange(self, bandit: str, deltas: Mapping[int, ArmCounts]) -> dict[int, ArmCounts]:
        key = self.key(bandit)
        try:
            async with self._client.pipeline(transaction=True) as pipe:
                for version, delta in deltas.items():
                    if delta.pulls:
                        pipe.hincrby(key, f"{version}:pulls", delta.pulls)
                    if delta.rewards:
                        pipe.hincrby(key, f"{version}:rewards", delta.rewards)
                        pipe.hincrbyfloat(key, f"{version}:reward_sum", delta.reward_sum)
                pipe.expire(key, EXPIRE_S)
                pipe.hgetall(key)
                replies = await pipe.execute()
        except (RedisConnectionError, RedisTimeoutError) as exc:
            raise ConnectionError(str(exc)) from exc
        except RedisError as exc:  # e.g. a wrong type at the key: not ours to fix
            raise ConnectionError(f"{type(exc).__name__}: {exc}") from exc
        return _totals(replies[-1])

    async def close(self) -> None:
        await self._client.aclose()


def _totals(fields: Mapping[str, str]) -> dict[int, ArmCounts]:
    totals: dict[int, ArmCounts] = {}
    for name, value in fields.items():
        version_text, _, counter = name.partition(":")
        if not version_text.isdigit():
            continue
        arm = totals.setdefault(int(version_text), ArmCounts())
        if counter == "pulls":
            arm.pulls = int(value)
        elif counter == "rewards":
            arm.rewards = int(value)
        elif counter == "reward_sum":
            arm.reward_sum = float(value)
    return totals
