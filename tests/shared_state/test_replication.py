"""Writes that must survive a failover wait for the replicas (cache.wait_replicas): a real
master with a real replica, the replica frozen to make it lag."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from gateway.callbacks.outbox import OutboxError, OutboxNotWritable, RedisOutbox
from gateway.config.model import RedisTarget
from gateway.upstream.stores import RedisStore
from gateway.upstream.tokens import StoreError
from tests.support.redis_ha import REPLICATION_ARGS
from tests.support.redis_server import RedisServer
from tests.support.waiting import until_answers

pytestmark = pytest.mark.e2e
NOW = 1_800_000_000.0


@pytest.fixture
async def replicated() -> AsyncIterator[tuple[RedisServer, RedisServer]]:
    # Both: the master would wait 5 s before it sends a replica its data.
    master = RedisServer(extra_args=REPLICATION_ARGS)
    await master.start()
    replica = RedisServer(
        extra_args=[*REPLICATION_ARGS, "--replicaof", "127.0.0.1", str(master.port)]
    )
    try:
        await replica.start()
        client = Redis(port=master.port)

        async def linked() -> bool:
            # As WAIT sees it: the replica acknowledges what the master writes.
            async with client.pipeline(transaction=False) as pipe:
                pipe.set("linked", b"1")
                pipe.execute_command("WAIT", 1, 100)
                acknowledged = (await pipe.execute())[1]
            return bool(acknowledged == 1)

        await until_answers(linked, timeout_s=10)
        await client.aclose()
        yield master, replica
    finally:
        await replica.stop()
        await master.stop()


async def accepted(outbox: RedisOutbox, trade_no: str) -> None:
    """Sent until answered, as the platform does: on a busy machine even a live replica may
    take longer than the wait to confirm."""

    async def once() -> bool:
        try:
            await outbox.add("demo", trade_no, 2, b"{}", NOW)
        except OutboxError:
            return False
        return True

    await until_answers(once, timeout_s=10)


def waiting_for_one(url: str) -> RedisTarget:
    return dataclasses.replace(
        RedisTarget.of_url(url, "neu:", 2), wait_replicas=1, wait_timeout_s=0.5
    )


async def test_a_callback_is_accepted_only_once_the_replica_has_it(
    replicated: tuple[RedisServer, RedisServer],
) -> None:
    master, replica = replicated
    outbox = RedisOutbox(waiting_for_one(master.url))
    try:
        await accepted(outbox, "T1")

        replica.pause()
        with pytest.raises(OutboxError, match="0 of 1 replicas had the write within 500 ms"):
            await outbox.add("demo", "T2", 2, b"{}", NOW)
        # The platform sends it again: still not known to survive a failover, still refused.
        with pytest.raises(OutboxError, match="0 of 1 replicas"):
            await outbox.add("demo", "T2", 2, b"{}", NOW)
        # Nor does the listener's first look (is it held already?) answer for it meanwhile.
        with pytest.raises(OutboxError, match="0 of 1 replicas"):
            await outbox.holds("T2", 2)
        with pytest.raises(OutboxNotWritable, match="the outbox's replicas lag"):
            await outbox.check_writable()

        replica.resume()

        async def accepted_at_last() -> bool:
            # As the platform does: sent again until answered 200, as already accepted now
            # that the replica has it (and the first write with it).
            try:
                return not await outbox.add("demo", "T2", 2, b"{}", NOW)
            except OutboxError:
                return False

        await until_answers(accepted_at_last, timeout_s=10)
        assert {d.trade_no for d in await outbox.listing(("pending",))} == {"T1", "T2"}
    finally:
        replica.resume()
        await outbox.close()


async def test_a_lease_the_replica_does_not_have_delivers_nothing(
    replicated: tuple[RedisServer, RedisServer],
) -> None:
    master, replica = replicated
    outbox = RedisOutbox(waiting_for_one(master.url))
    try:
        await accepted(outbox, "T1")
        replica.pause()
        with pytest.raises(OutboxError, match="replicas"):
            await outbox.due(NOW, 10, lease_s=30)
        replica.resume()
        # Leased on the master meanwhile: due again once that lease has run out.
        assert [d.trade_no for d in await outbox.due(NOW + 31, 10, lease_s=30)] == ["T1"]
    finally:
        replica.resume()
        await outbox.close()


async def test_a_cached_answer_waits_for_the_replica(
    replicated: tuple[RedisServer, RedisServer],
) -> None:
    master, replica = replicated
    store = RedisStore(waiting_for_one(master.url))
    try:
        replica.pause()
        with pytest.raises(StoreError, match="NotAcknowledged"):
            await store.put("x:demo:2", b"answer", 60)
    finally:
        replica.resume()
        await store.close()


async def test_a_master_without_replicas_does_not_wait(redis_server: RedisServer) -> None:
    """Left alone after a failover, the master has no replica a later failover could
    promote: its writes are not refused for want of one."""
    outbox = RedisOutbox(waiting_for_one(redis_server.url))
    try:
        assert await outbox.add("demo", "T1", 2, b"{}", NOW)
        await outbox.check_writable()
    finally:
        await outbox.close()
