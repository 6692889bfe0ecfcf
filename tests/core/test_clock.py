"""within(): a wait bounded by the injected clock's time, not the loop's."""

from __future__ import annotations

import asyncio
import time

import pytest

from gateway.core.clock import SystemClock, within
from tests.support.clock import MutableClock


async def test_the_result_comes_through_when_it_is_in_time() -> None:
    ready = asyncio.sleep(0, result="answer")  # wait-ok: an awaitable that is done at once
    assert await within(MutableClock(), 60, ready) == "answer"


async def test_moving_the_clock_past_the_bound_ends_the_wait_and_cancels_the_work() -> None:
    clock = MutableClock()
    work = asyncio.ensure_future(asyncio.Event().wait())
    waiting = asyncio.ensure_future(within(clock, 60, work))
    await clock.until_sleeping()
    clock.advance(60)
    with pytest.raises(TimeoutError):
        await waiting
    assert work.cancelled()


async def test_a_shielded_future_outlives_the_timeout() -> None:
    clock = MutableClock()
    shared: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    waiting = asyncio.ensure_future(within(clock, 1, asyncio.shield(shared)))
    await clock.until_sleeping()
    clock.advance(1)
    with pytest.raises(TimeoutError):
        await waiting
    assert not shared.done()


async def test_cancelling_the_waiter_cancels_the_work() -> None:
    work = asyncio.ensure_future(asyncio.Event().wait())
    waiting = asyncio.ensure_future(within(MutableClock(), 60, work))
    await asyncio.sleep(0)  # wait-ok: one turn of the loop, so both waits have begun
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert work.cancelled()


async def test_errors_of_the_work_are_raised() -> None:
    async def fails() -> None:
        raise ValueError("bad")

    with pytest.raises(ValueError, match="bad"):
        await within(MutableClock(), 60, fails())


async def test_the_system_clock_reads_milliseconds_and_sleeps() -> None:
    clock = SystemClock()
    before = time.time_ns() // 1_000_000
    now = clock.now_ms()
    assert isinstance(now, int)
    assert before <= now <= time.time_ns() // 1_000_000
    started = clock.monotonic()
    await clock.sleep(0.01)  # wait-ok: the system clock's own sleep is what is tested
    assert clock.monotonic() - started >= 0.01
