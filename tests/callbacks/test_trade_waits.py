"""Waiting for a trade (tradedetail with wait=N) through a gateway whose callbacks listener
is on: one polling loop for every waiter, and a verified callback that ends the wait at once."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from gateway.config.load import from_mapping
from gateway.egress.keys import WAITS
from gateway.runtime.app import create_app
from gateway.upstream.waits import MAX_PAUSE_S
from tests.callbacks.conftest import DETAIL, Sandbox, config_for
from tests.conftest import guarded
from tests.support.clock import MutableClock
from tests.support.platform_double import SECRET
from tests.support.receiver import CallbackReceiver

Client = TestClient[Any, Any]


async def wait_for(
    gateway: Client, trade_no: str, seconds: int
) -> tuple[aiohttp.ClientResponse, dict[str, Any]]:
    response = await gateway.get(DETAIL, params={"tradeNo": trade_no, "wait": str(seconds)})
    return response, await response.json()


async def test_wait_resolves_when_the_payer_pays(gateway: Client) -> None:
    sandbox = Sandbox(gateway)
    trade_no = await sandbox.new_trade(notify_url="http://127.0.0.1:9/unused")
    waiting = asyncio.ensure_future(wait_for(gateway, trade_no, 20))
    await sandbox.pay(trade_no)
    response, body = await waiting
    assert response.headers["X-Neu-Wait"] == "done"
    assert body["response"]["transactionStatus"] == 2


@pytest.fixture
def clock() -> MutableClock:
    return MutableClock()


@pytest.fixture
def start_held(
    aiohttp_client: Any, tmp_path: Path, receiver: CallbackReceiver, clock: MutableClock
) -> Callable[..., Awaitable[Client]]:
    """The gateway on a clock the test moves: its waits end when the test says so."""

    async def start(callbacks: bool = True) -> Client:
        document = config_for(tmp_path, receiver)
        if not callbacks:
            # No delivery worker: the trade waits are the only ones on the clock.
            del document["callbacks"]
        config = from_mapping(document, {"S": SECRET})
        client: Client = await aiohttp_client(guarded(create_app(config, clock=clock)))
        return client

    return start


@pytest.fixture
async def held_gateway(start_held: Callable[..., Awaitable[Client]]) -> Client:
    return await start_held(callbacks=False)


async def until(condition: Callable[[], Awaitable[bool]]) -> None:
    for _ in range(500):
        if await condition():
            return
        await asyncio.sleep(0.01)  # wait-ok: polls for the condition
    raise AssertionError("the condition never held")


def waiting_on(gateway: Client, trade_no: str, count: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        waiters: int = gateway.app[WAITS].waiters("demo", trade_no)
        return waiters == count

    return check


def answered(gateway: Client, trade_no: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return bool(gateway.app[WAITS].answered("demo", trade_no))

    return check


async def test_wait_times_out_with_status_1(held_gateway: Client, clock: MutableClock) -> None:
    sandbox = Sandbox(held_gateway)
    trade_no = await sandbox.new_trade(notify_url="http://127.0.0.1:9/unused")
    waiting = asyncio.ensure_future(wait_for(held_gateway, trade_no, 1))
    # The platform's first answer in (on a loaded machine the first attempt may time out and
    # its retry wait on the clock too), then the waiter's bound and the loop's pause.
    await until(answered(held_gateway, trade_no))
    await clock.until_sleeping(2)
    clock.advance(1)
    response, body = await waiting
    assert response.headers.get("X-Neu-Wait") == "timeout", (response.status, body)
    assert body["response"]["transactionStatus"] == 1


async def test_fifty_waiters_share_one_polling_loop(
    held_gateway: Client, clock: MutableClock
) -> None:
    sandbox = Sandbox(held_gateway)
    trade_no = await sandbox.new_trade(notify_url="http://127.0.0.1:9/unused")
    waiting = [asyncio.ensure_future(wait_for(held_gateway, trade_no, 60)) for _ in range(50)]
    for _ in range(4):
        # Past each of the loop's pauses, however long it has grown: one poll after each.
        await clock.until_sleeping(50 + 1)
        polls = await sandbox.detail_calls()
        clock.advance(MAX_PAUSE_S)
        await until(functools.partial(_more_polls_than, sandbox, polls))
    clock.advance(60)
    results = await asyncio.gather(*waiting)
    assert {r.headers["X-Neu-Wait"] for r, _ in results} == {"timeout"}
    # One loop: a first poll and one after each pause, not fifty of each.
    assert await sandbox.detail_calls() <= 6


async def _more_polls_than(sandbox: Sandbox, polls: int) -> bool:
    return await sandbox.detail_calls() > polls


async def test_a_verified_callback_answers_waiters_at_once(
    start_held: Callable[..., Awaitable[Client]],
) -> None:
    # The clock stands still, so the loop polls once: only the callback can end the wait.
    held_gateway = await start_held()
    sandbox = Sandbox(held_gateway)
    trade_no = await sandbox.new_trade()
    waiting = [asyncio.ensure_future(wait_for(held_gateway, trade_no, 30)) for _ in range(5)]
    await until(waiting_on(held_gateway, trade_no, 5))
    await until(lambda: _more_polls_than(sandbox, 0))
    await sandbox.pay(trade_no)
    results = await asyncio.gather(*waiting)
    assert {r.headers["X-Neu-Wait"] for r, _ in results} == {"done"}
    assert {b["response"]["transactionStatus"] for _, b in results} == {2}
    # The loop's first poll, and the callback's own confirmation: nothing more.
    assert await sandbox.detail_calls() == 2


@pytest.mark.parametrize("wait", ["0", "61", "soon"])
async def test_wait_must_be_1_to_60_seconds(gateway: Client, wait: str) -> None:
    response = await gateway.get(DETAIL, params={"tradeNo": "T", "wait": wait})
    body = await response.json()
    assert (response.status, body["error"]) == (400, "validation_failed")
