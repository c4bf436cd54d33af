"""A Redis key prefix of a test's own on the machine's real Redis, its keys deleted after."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import redis


@contextmanager
def redis_prefix(url: str) -> Iterator[str]:
    prefix = f"serval-test-{uuid.uuid4().hex}:"
    try:
        yield prefix
    finally:
        client = redis.Redis.from_url(url)
        keys = list(client.scan_iter(f"{prefix}*"))
        if keys:
            client.delete(*keys)
        client.close()
