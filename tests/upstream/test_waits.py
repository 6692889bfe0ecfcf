"""Trade waits: one polling loop per trade however many callers wait, ended by a settled
answer, a verified callback, or the callers' time."""

from __future__ import annotations

import asyncio
import json

import pytest
from multidict import CIMultiDict

from gateway.core.errors import UpstreamTimeout, UpstreamUnreachable
from gateway.upstream.transport import Answer
from gateway.upstream.waits import TradeWaits, is_settled
from tests.support.clock import MutableClock


def detail(status: int) -> Answer:
    body = {
        "responseHeader": {"status": 200, "msg": "OK"},
        "response": {"transactionStatus": status},
    }
    return Answer(200, CIMultiDict(), json.dumps(body).encode())


PROCESSING, PAID = detail(1), detail(2)


class Fetches:
    """tradedetail as the platform answers it, counted."""

    def __init__(self, *answers: Answer) -> None:
        self.answers = list(answers)
        self.count = 0

    async def __call__(self) -> Answer:
        self.count += 1
        return self.answers[min(self.count, len(self.answers)) - 1]


def test_only_a_processing_trade_is_worth_waiting_for() -> None:
    assert not is_settled(PROCESSING)
    assert is_settled(PAID)
    assert is_settled(Answer(502, CIMultiDict(), b"bad gateway"))


async def test_a_settled_trade_answers_at_once() -> None:
    fetches = Fetches(PAID)
    answer, settled = await TradeWaits(MutableClock()).wait("demo", "T1", 5, fetches)
    assert (answer, settled, fetches.count) == (PAID, True, 1)


async def test_callers_waiting_on_one_trade_share_one_loop_and_a_callback_ends_it() -> None:
    clock = MutableClock()
    waits = TradeWaits(clock)
    fetches = Fetches(PROCESSING)
    callers = [asyncio.ensure_future(waits.wait("demo", "T1", 30, fetches)) for _ in range(3)]
    await clock.until_sleeping(4)  # three waiters and the loop's pause
    assert waits.waiters("demo", "T1") == 3
    waits.settle("demo", "T1", PAID)
    assert [await caller for caller in callers] == [(PAID, True)] * 3
    assert fetches.count == 1
    assert waits.waiters("demo", "T1") == 0


async def test_the_loop_polls_with_growing_pauses_until_the_trade_settles() -> None:
    clock = MutableClock()
    fetches = Fetches(PROCESSING, PROCESSING, PAID)
    waiting = asyncio.ensure_future(TradeWaits(clock).wait("demo", "T1", 30, fetches))
    for polled in (1, 2):
        async with asyncio.timeout(5):
            # The waiter and the loop both asleep, after the loop's `polled`-th fetch.
            while not (fetches.count == polled and clock.sleepers == 2):  # noqa: ASYNC110
                await asyncio.sleep(0)  # wait-ok: the clock has no event for its sleepers
        clock.advance(5)
    assert await waiting == (PAID, True)
    assert fetches.count == 3


async def test_at_the_callers_time_the_latest_answer_comes_unsettled() -> None:
    clock = MutableClock()
    waiting = asyncio.ensure_future(TradeWaits(clock).wait("demo", "T1", 1, Fetches(PROCESSING)))
    await clock.until_sleeping(2)
    clock.advance(1)
    assert await waiting == (PROCESSING, False)


async def test_no_answer_in_the_callers_time_is_a_timeout_and_the_loop_stops() -> None:
    clock = MutableClock()
    cancelled = asyncio.Event()

    async def hangs() -> Answer:
        try:
            await asyncio.Event().wait()
        finally:
            cancelled.set()
        raise AssertionError("unreachable")  # pragma: no cover

    waiting = asyncio.ensure_future(TradeWaits(clock).wait("demo", "T1", 1, hangs))
    await clock.until_sleeping(1)
    clock.advance(1)
    with pytest.raises(UpstreamTimeout, match=r"within the wait \(1 s\)"):
        await waiting
    await cancelled.wait()


async def test_an_error_before_any_answer_reaches_every_waiter() -> None:
    async def unreachable() -> Answer:
        raise UpstreamUnreachable()

    with pytest.raises(UpstreamUnreachable):
        await TradeWaits(MutableClock()).wait("demo", "T1", 5, unreachable)
