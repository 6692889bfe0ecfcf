"""The Redis outbox: the contract every outbox keeps, how long it keeps rows and signs, its
signal of another process's change, and its errors."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from gateway.callbacks.outbox import OutboxError, OutboxNotWritable, RedisOutbox
from gateway.config.model import RedisTarget
from tests.callbacks.outbox_contract import CONTRACT, NOW, Check
from tests.support.redis_server import RedisServer

PREFIX = "neu:test:"


@pytest.fixture
async def outbox(redis_server: RedisServer) -> AsyncIterator[RedisOutbox]:
    outbox = RedisOutbox(RedisTarget.of_url(redis_server.url, PREFIX, 2))
    yield outbox
    await outbox.close()


@pytest.fixture
async def admin(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(redis_server.url)
    yield client
    await client.aclose()


@pytest.mark.parametrize("check", CONTRACT, ids=[check.__name__ for check in CONTRACT])
async def test_the_outbox_contract(outbox: RedisOutbox, check: Check) -> None:
    await check(outbox)


async def test_done_rows_are_kept_a_while_and_a_replayed_one_for_good(
    outbox: RedisOutbox, admin: aioredis.Redis
) -> None:
    await outbox.add("demo", "T1", 2, b"{}", NOW)
    await outbox.add("demo", "T2", 2, b"{}", NOW)
    first, second = await outbox.due(NOW, 10, lease_s=30)
    assert await admin.ttl(f"{PREFIX}outbox:d:{first.id}") == -1, "pending: never expires"
    await outbox.delivered(first.id)
    assert 0 < await admin.ttl(f"{PREFIX}outbox:d:{first.id}") <= RedisOutbox.RETAIN_S
    await outbox.failed(second.id, "HTTP 500", NOW, dead=True)
    assert await admin.ttl(f"{PREFIX}outbox:d:{second.id}") > RedisOutbox.RETAIN_S
    await outbox.replay(second.id, NOW)
    assert await admin.ttl(f"{PREFIX}outbox:d:{second.id}") == -1


async def test_a_sign_is_forgotten_when_its_time_is_up(outbox: RedisOutbox) -> None:
    await outbox.remember_sign("s1", NOW, ttl_s=0.05)
    for _ in range(200):
        if not await outbox.sign_seen("s1", NOW):
            return
        await asyncio.sleep(0.01)  # wait-ok: polls for Redis to expire the key
    raise AssertionError("the sign was never forgotten")


async def test_a_replay_by_another_process_is_signalled(
    outbox: RedisOutbox, redis_server: RedisServer, admin: aioredis.Redis
) -> None:
    other = RedisOutbox(RedisTarget.of_url(redis_server.url, PREFIX, 2))
    changes = outbox.changes()
    try:
        await outbox.add("demo", "T1", 2, b"{}", NOW)
        [delivery] = await outbox.due(NOW, 10, lease_s=30)
        await outbox.failed(delivery.id, "HTTP 500", NOW, dead=True)
        listening = asyncio.ensure_future(changes.__anext__())
        for _ in range(500):
            if (await admin.pubsub_numsub(f"{PREFIX}outbox:changes"))[0][1] == 1:
                break
            await asyncio.sleep(0.01)  # wait-ok: polls for the subscription to be made
        assert await other.replay(delivery.id, NOW)
        async with asyncio.timeout(5):
            await listening
    finally:
        await changes.aclose()
        await other.close()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_a_redis_that_does_not_answer_is_an_outbox_error() -> None:
    outbox = RedisOutbox(RedisTarget.of_url(f"redis://127.0.0.1:{closed_port()}/0", "neu:", 0.5))
    try:
        for call in (
            outbox.add("demo", "t1", 2, b"{}", 0.0),
            outbox.holds("t1", 2),
            outbox.sign_seen("s", 0.0),
            outbox.listing(("pending",)),
        ):
            with pytest.raises(OutboxError):
                await call
    finally:
        await outbox.close()


async def test_a_redis_that_refuses_writes_is_reported(
    outbox: RedisOutbox, admin: aioredis.Redis
) -> None:
    await outbox.check_writable()
    # Out of memory with nothing to evict: it answers PING, and refuses every write.
    await admin.config_set("maxmemory-policy", "noeviction")
    await admin.config_set("maxmemory", 1)
    assert await admin.ping()
    with pytest.raises(OutboxNotWritable, match="Redis refuses writes"):
        await outbox.check_writable()
    await admin.config_set("maxmemory", 0)
    await outbox.check_writable()
