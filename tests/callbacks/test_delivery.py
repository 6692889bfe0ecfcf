"""The delivery worker over a real outbox: retries, and two workers never sending one twice."""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

import pytest

from gateway.callbacks.delivery import (
    IDLE_CHECK_S,
    DeliveryPolicy,
    DeliveryWorker,
    Destination,
    jittered_backoff_s,
)
from gateway.callbacks.outbox import (
    SQLITE_CHANGE_CHECK_S,
    Delivery,
    Outbox,
    OutboxError,
    RedisOutbox,
    SqliteOutbox,
)
from gateway.config.model import RedisTarget
from gateway.core.clock import SystemClock
from tests.support.clock import MutableClock
from tests.support.receiver import CallbackReceiver
from tests.support.redis_server import RedisServer
from tests.support.waiting import until_answers

SETTINGS = DeliveryPolicy(backoff_s=0.05, max_backoff_s=0.1, max_attempts=5, timeout_s=5)


def test_backoff_grows_is_capped_and_jittered() -> None:
    rng = random.Random(7)
    delays = [jittered_backoff_s(n, 1.0, 8.0, rng) for n in range(1, 8)]
    assert 0.5 <= delays[0] <= 1.5
    assert 4 <= delays[3] <= 12
    assert all(delay <= 12 for delay in delays)


async def two_workers_deliver_each_once(outbox: Outbox, receiver: CallbackReceiver) -> None:
    clock = SystemClock()
    now = clock.now_ms() / 1000
    for i in range(30):
        assert await outbox.add("demo", f"T{i}", 2, b'{"n": %d}' % i, now)
    assert not await outbox.add("demo", "T0", 2, b"again", now), "one row per (tradeNo, status)"
    workers = [
        DeliveryWorker(outbox, {"demo": Destination(receiver.url)}, SETTINGS, clock)
        for _ in range(2)
    ]
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
    outbox = RedisOutbox(RedisTarget.of_url(redis_server.url, "neu:test:", 2))
    try:
        await two_workers_deliver_each_once(outbox, receiver)
    finally:
        await outbox.close()


async def test_stop_returns_promptly_in_every_state(
    redis_server: RedisServer, receiver: CallbackReceiver
) -> None:
    """redis-py may absorb a cancellation mid-call; stop() must not wait out an idle check."""
    outbox = RedisOutbox(RedisTarget.of_url(redis_server.url, "neu:stop:", 2))
    try:
        for round_no in range(50):
            worker = DeliveryWorker(
                outbox, {"demo": Destination(receiver.url)}, SETTINGS, SystemClock()
            )
            worker.start()
            for _ in range(round_no % 10):
                # Each round stops the worker at a different point of its loop.
                await asyncio.sleep(0)  # wait-ok: a bare yield to the loop, not a wait
            started = time.monotonic()
            await worker.stop()
            assert time.monotonic() - started < 1.0, f"round {round_no}"
    finally:
        await outbox.close()


@pytest.mark.parametrize("store", ["sqlite", "redis"])
async def test_a_replay_from_another_process_wakes_the_worker(
    store: str, tmp_path: Path, redis_server: RedisServer, receiver: CallbackReceiver
) -> None:
    """The worker is told of the replay, well before its idle check comes round."""

    clock = MutableClock()

    def open_outbox() -> Outbox:
        if store == "sqlite":
            return SqliteOutbox(tmp_path / "outbox.db", clock)
        return RedisOutbox(RedisTarget.of_url(redis_server.url, "neu:wake:", 2))

    outbox, other = open_outbox(), open_outbox()
    now = clock.now_ms() / 1000
    await outbox.add("demo", "T1", 2, b"{}", now)
    [delivery] = await outbox.due(now, 10, lease_s=30)
    await outbox.failed(delivery.id, "HTTP 500", now, dead=True)
    worker = DeliveryWorker(outbox, {"demo": Destination(receiver.url)}, SETTINGS, clock)
    worker.start()
    try:
        # The worker idles; with SQLite its watch sleeps between looks at the file too.
        await clock.until_sleeping(2 if store == "sqlite" else 1)
        started = time.monotonic()
        assert await other.replay(delivery.id, now)
        if store == "sqlite":
            clock.advance(SQLITE_CHANGE_CHECK_S)
        await receiver.wait_accepted(1)
        assert time.monotonic() - started < IDLE_CHECK_S / 2
    finally:
        await worker.stop()
        await other.close()
        await outbox.close()


async def test_each_attempt_is_counted_and_the_last_failure_is_dead(
    tmp_path: Path, receiver: CallbackReceiver
) -> None:
    outbox = SqliteOutbox(tmp_path / "outbox.db")
    outcomes: list[str] = []
    finished = asyncio.Event()

    def count(outcome: str) -> None:
        outcomes.append(outcome)
        if len(outcomes) == 3:
            finished.set()

    policy = DeliveryPolicy(max_attempts=2, backoff_s=0.01, max_backoff_s=0.02, timeout_s=5)
    clock = SystemClock()
    targets = {"demo": Destination(receiver.url), "gone": Destination(None)}
    await outbox.add("gone", "T1", 2, b"{}", clock.now_ms() / 1000)
    await outbox.add("demo", "T2", 2, b"{}", clock.now_ms() / 1000)
    worker = DeliveryWorker(outbox, targets, policy, clock, count)
    worker.start()
    try:
        async with asyncio.timeout(10):
            await finished.wait()
    finally:
        await worker.stop()
        [dead] = await outbox.listing(("dead",))
        await outbox.close()
    assert sorted(outcomes) == ["dead", "delivered", "failed"]
    assert (dead.trade_no, dead.attempts, dead.last_error) == (
        "T1",
        2,
        "no callbacks.deliver_to for this app",
    )
    assert receiver.headers[0]["Idempotency-Key"] == "T2:2"
    assert receiver.headers[0]["X-Neu-Verified"] == "tradedetail"


class RecordingFails:
    """An outbox whose record of a delivery fails until told otherwise, as a Redis failover
    makes it fail; everything else is the real SQLite outbox's."""

    def __init__(self, outbox: SqliteOutbox) -> None:
        self.outbox = outbox
        self.failing = True
        self.leased_again = asyncio.Event()
        self._leased: set[int] = set()

    def __getattr__(self, name: str) -> object:
        return getattr(self.outbox, name)

    async def due(self, now: float, limit: int, lease_s: float) -> list[Delivery]:
        batch = await self.outbox.due(now, limit, lease_s)
        for delivery in batch:
            if delivery.id in self._leased:
                self.leased_again.set()
            self._leased.add(delivery.id)
        return batch

    async def delivered(self, delivery_id: int) -> None:
        if self.failing:
            raise OutboxError("ConnectionError: the master is gone")
        await self.outbox.delivered(delivery_id)


async def test_a_delivery_the_outbox_could_not_record_is_not_sent_again(
    tmp_path: Path, receiver: CallbackReceiver
) -> None:
    """The service answered 2xx, then the outbox failed: even once the lease has run out and
    the delivery is due again, it is recorded, not sent a second time."""
    outbox = RecordingFails(SqliteOutbox(tmp_path / "outbox.db"))
    clock = SystemClock()
    await outbox.add("demo", "T1", 2, b"{}", clock.now_ms() / 1000)
    quick = DeliveryPolicy(backoff_s=0.05, max_backoff_s=0.1, max_attempts=5, timeout_s=0.2)
    worker = DeliveryWorker(outbox, {"demo": Destination(receiver.url)}, quick, clock)  # type: ignore[arg-type]
    worker.start()
    try:
        await receiver.wait_accepted(1)
        async with asyncio.timeout(10):
            await outbox.leased_again.wait()
        outbox.failing = False

        async def recorded() -> bool:
            return not await outbox.outbox.listing(("pending",))

        await until_answers(recorded, timeout_s=10)
    finally:
        await worker.stop()
        await outbox.outbox.close()
    assert len(receiver.headers) == 1


@pytest.mark.parametrize(
    "trade_no",
    [
        pytest.param("T1\r\nX-Forged: 1", id="CR LF"),
        pytest.param("T1\x00", id="NUL"),
        pytest.param("T1\x7f", id="DEL"),
        pytest.param(" T1", id="leading space (receivers drop it)"),
    ],
)
async def test_a_trade_no_no_header_can_carry_is_dead_at_once(
    tmp_path: Path, receiver: CallbackReceiver, caplog: pytest.LogCaptureFixture, trade_no: str
) -> None:
    # The client library refuses such a header by raising, which the worker did not expect:
    # the delivery was never recorded as failed, and went out again at each lease's end,
    # a traceback each time. One a receiver would trim would be signed over other bytes.
    outbox = SqliteOutbox(tmp_path / "outbox.db")
    outcomes: list[str] = []
    finished = asyncio.Event()

    def count(outcome: str) -> None:
        outcomes.append(outcome)
        finished.set()

    clock = SystemClock()
    await outbox.add("demo", trade_no, 2, b"{}", clock.now_ms() / 1000)
    worker = DeliveryWorker(outbox, {"demo": Destination(receiver.url)}, SETTINGS, clock, count)
    worker.start()
    try:
        async with asyncio.timeout(5):
            await finished.wait()
    finally:
        await worker.stop()
        [dead] = await outbox.listing(("dead",))
        await outbox.close()
    assert outcomes == ["dead"]
    assert dead.attempts == 1
    assert dead.last_error == "its tradeNo cannot be sent in a header as it is"
    assert receiver.headers == []
    assert "Traceback" not in caplog.text
