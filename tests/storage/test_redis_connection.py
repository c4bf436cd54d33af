"""The Redis connection every layer shares: failures are LookupUnavailableError, fast; one
warning per outage; no network while backing off; a bounded exchange against a server that
never answers; recovery (one info line) when Redis answers again, without a restart."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
import redis.asyncio as aioredis

from serval.core.composition.stores import LookupUnavailableError
from serval.storage.redis_connection import RedisConnection, describe_url
from serval.testing import free_port
from tests.storage.redis_doubles import Forwarder, silent_server

LOGGER = "serval.storage.redis_connection"


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Pings:
    """An operation that counts the times it reached the client."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, client: aioredis.Redis) -> bool:
        self.calls += 1
        return bool(await client.ping())


def records(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == level]


def test_the_url_is_described_without_its_password() -> None:
    assert (
        describe_url("redis://user:secret@db.local:6380/2?password=x") == "redis://db.local:6380/2"
    )
    assert describe_url("redis://127.0.0.1/0") == "redis://127.0.0.1/0"
    assert describe_url("unix:///run/redis.sock?password=x") == "unix:///run/redis.sock"
    assert describe_url("redis://[::1]:6379/0") == "redis://[::1]:6379/0"
    connection = RedisConnection("redis://:secret@127.0.0.1:6379/0", timeout_s=0.1)
    assert "secret" not in connection.describe()


def test_a_working_redis_answers() -> None:
    async def test() -> None:
        connection = RedisConnection("redis://127.0.0.1:6379/0", timeout_s=0.5)
        pings = Pings()
        assert await connection.run(pings) is True
        assert await connection.run(pings) is True
        assert not connection.down
        await connection.close()

    asyncio.run(test())


def test_a_closed_port_fails_fast_with_one_warning_then_backs_off(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, LOGGER)
    clock = FakeClock()
    connection = RedisConnection(f"redis://127.0.0.1:{free_port()}/0", timeout_s=0.2, clock=clock)
    pings = Pings()

    async def fails() -> str:
        with pytest.raises(LookupUnavailableError) as raised:
            await connection.run(pings)
        return str(raised.value)

    async def test() -> None:
        started = time.perf_counter()
        reason = await fails()
        assert time.perf_counter() - started < 0.4  # refused: no waiting for a timeout
        assert "127.0.0.1" in reason and pings.calls == 1 and connection.down
        for _ in range(50):  # during the backoff: no network at all
            assert "unreachable" in await fails()
        assert pings.calls == 1
        clock.now += 0.5  # the first backoff has passed: one call probes, and fails
        await fails()
        assert pings.calls == 2
        clock.now += 0.9  # the backoff doubled to 1 s
        await fails()
        assert pings.calls == 2
        clock.now += 0.1
        await fails()
        assert pings.calls == 3
        for _ in range(6):  # doubling up to 5 s at most
            clock.now += 5.0
            await fails()
        assert pings.calls == 9
        clock.now += 4.9
        await fails()
        assert pings.calls == 9
        await connection.close()

    asyncio.run(test())
    assert len(records(caplog, logging.WARNING)) == 1
    assert "unreachable" in records(caplog, logging.WARNING)[0]
    assert records(caplog, logging.INFO) == []


def test_one_call_probes_while_the_others_fail_fast() -> None:
    clock = FakeClock()

    async def test() -> None:
        async with silent_server() as port:
            connection = RedisConnection(f"redis://127.0.0.1:{port}/0", timeout_s=0.1, clock=clock)
            pings = Pings()
            results = await asyncio.gather(  # all sent before the outage is known
                *(connection.run(pings) for _ in range(10)), return_exceptions=True
            )
            assert all(isinstance(r, LookupUnavailableError) for r in results)
            assert pings.calls == 10
            clock.now += 0.5  # their ten failures are one outage: the first backoff
            results = await asyncio.gather(
                *(connection.run(pings) for _ in range(10)), return_exceptions=True
            )
            assert all(isinstance(r, LookupUnavailableError) for r in results)
            assert pings.calls == 11  # and one probe
            await connection.close()

    asyncio.run(test())


def test_a_server_that_never_answers_times_out_within_twice_the_timeout() -> None:
    async def test() -> None:
        async with silent_server() as port:
            connection = RedisConnection(f"redis://127.0.0.1:{port}/0", timeout_s=0.2)
            started = time.perf_counter()
            with pytest.raises(LookupUnavailableError, match="Timeout"):
                await connection.run(Pings())
            elapsed = time.perf_counter() - started
            assert 0.15 < elapsed < 0.4 + 0.2  # 2 x timeout_s, and a little scheduling
            await connection.close()

    asyncio.run(test())


def test_a_slow_operation_is_cut_at_twice_the_timeout() -> None:
    async def slow(client: aioredis.Redis) -> None:
        await client.ping()
        await asyncio.sleep(10)  # an exchange of many replies, each within the socket timeout

    async def test() -> None:
        connection = RedisConnection("redis://127.0.0.1:6379/0", timeout_s=0.1)
        started = time.perf_counter()
        with pytest.raises(LookupUnavailableError, match="TimeoutError"):
            await connection.run(slow)
        assert time.perf_counter() - started < 0.2 + 0.2
        await connection.close()

    asyncio.run(test())


def test_an_error_reply_is_unavailable_but_not_an_outage(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, LOGGER)

    async def test() -> None:
        connection = RedisConnection("redis://127.0.0.1:6379/0", timeout_s=0.5)
        with pytest.raises(LookupUnavailableError, match="unknown command"):
            await connection.run(lambda client: client.execute_command("NOSUCHCOMMAND"))
        assert not connection.down
        assert await connection.run(Pings()) is True
        await connection.close()

    asyncio.run(test())
    assert records(caplog, logging.WARNING) == []


def test_it_recovers_when_redis_answers_again_and_logs_each_outage_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, LOGGER)
    clock = FakeClock()
    forwarder = Forwarder(free_port())
    connection = RedisConnection(
        f"redis://127.0.0.1:{forwarder.port}/0", timeout_s=0.3, clock=clock
    )
    pings = Pings()

    async def test() -> None:
        for _ in range(3):  # down: nothing listens on the port
            with pytest.raises(LookupUnavailableError):
                await connection.run(pings)
        await forwarder.start()  # Redis is back
        with pytest.raises(LookupUnavailableError):  # still backing off
            await connection.run(pings)
        clock.now += 0.5
        assert await connection.run(pings) is True
        assert await connection.run(pings) is True
        assert not connection.down
        await forwarder.stop()  # "restarted": connections cut, nothing listening
        with pytest.raises(LookupUnavailableError):
            await connection.run(pings)
        await forwarder.start()
        clock.now += 0.5
        assert await connection.run(pings) is True
        await forwarder.stop()  # a quick restart between two requests: not an outage
        await forwarder.start()
        assert await connection.run(pings) is True
        assert not connection.down
        await connection.close()
        await forwarder.stop()

    asyncio.run(test())
    assert len(records(caplog, logging.WARNING)) == 2  # one per outage
    assert (
        records(caplog, logging.INFO)
        == [f"redis redis://127.0.0.1:{forwarder.port}/0 answers again"] * 2
    )
