"""The delivery worker over a real outbox: retries, and two workers never sending one twice."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from gateway.callbacks.delivery import DeliveryPolicy, DeliveryWorker, backoff_s
from gateway.callbacks.outbox import Outbox, RedisOutbox, SqliteOutbox
from gateway.core.clock import SystemClock
from tests.receiver import CallbackReceiver
from tests.redis_server import RedisServer

SETTINGS = DeliveryPolicy(backoff_s=0.05, max_backoff_s=0.1, max_attempts=5, timeout_s=5)


def test_backoff_grows_is_capped_and_jittered() -> None:
    rng = random.Random(7)
    delays = [backoff_s(n, 1.0, 8.0, rng) for n in range(1, 8)]
    assert 0.5 <= delays[0] <= 1.5
    assert 4 <= delays[3] <= 12
    assert all(delay <= 12 for delay in delays)


async def two_workers_deliver_each_once(outbox: Outbox, receiver: CallbackReceiver) -> None:
    clock = SystemClock()
    now = clock.now_ms() / 1000
    for i in range(30):
        assert await outbox.add("demo", f"T{i}", 2, b'{"n": %d}' % i, now)
    assert not await outbox.add("demo", "T0", 2, b"again", now), "one row per (tradeNo, status)"
    workers = [DeliveryWorker(outbox, {"demo": receiver.url}, SETTINGS, clock) for _ in range(2)]
    for worker in workers:
        worker.start()
    try:
        await receiver.wait_accepted(30)
    finally:
        for worker in workers:
            await worker.stop()
    keys = [headers["Idempotency-Key"] for headers in receiver.headers]
    assert sorted(keys) == sorted(f"T{i}:2" for i in range(30))


async def test_two_workers_on_one_sqlite_outbox(tmp_path: Path, receiver: CallbackReceiver) -> None:
    outbox = SqliteOutbox(tmp_path / "outbox.db")
    try:
        await two_workers_deliver_each_once(outbox, receiver)
    finally:
        await outbox.close()


async def test_two_workers_on_one_redis_outbox(
    redis_server: RedisServer, receiver: CallbackReceiver
) -> None:
    outbox = RedisOutbox(redis_server.url, "neu:test:", timeout_s=2)
    try:
        await two_workers_deliver_each_once(outbox, receiver)
    finally:
        await outbox.close()


@pytest.mark.parametrize("store", ["sqlite", "redis"])
async def test_listing_and_replay(store: str, tmp_path: Path, redis_server: RedisServer) -> None:
    outbox: Outbox = (
        SqliteOutbox(tmp_path / "o.db")
        if store == "sqlite"
        else RedisOutbox(redis_server.url, "neu:", timeout_s=2)
    )
    try:
        await outbox.add("demo", "T1", 3, b"{}", 100.0)
        [delivery] = await outbox.due(100.0, 10, lease_s=30)
        assert await outbox.due(100.0, 10, lease_s=30) == [], "leased to the first caller"
        await outbox.failed(delivery.id, "HTTP 500", 200.0, dead=True)
        [dead] = await outbox.listing(("pending", "dead"))
        assert (dead.state, dead.attempts, dead.last_error) == ("dead", 1, "HTTP 500")
        assert await outbox.replay(dead.id, 300.0)
        assert not await outbox.replay(999, 300.0)
        [again] = await outbox.due(300.0, 10, lease_s=30)
        assert (again.state, again.attempts) == ("pending", 0)
        await outbox.delivered(again.id)
        assert await outbox.listing(("pending", "dead")) == []
    finally:
        await outbox.close()
