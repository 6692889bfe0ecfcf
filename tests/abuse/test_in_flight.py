"""One caller's long requests cannot hold every connection: past its max_in_flight it is
answered 429 at once and let go, and other callers and /healthz are still served."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.abuse.conftest import (
    Answer,
    StartTarget,
    Target,
    assert_refused,
    exchange,
    read_answer,
    request_bytes,
)
from tests.support.paths import DETAIL
from tests.support.paths import SANDBOX_ECHO as ECHO

# Every gateway here is started and watched on the module's event loop (conftest.py).
pytestmark = pytest.mark.asyncio(loop_scope="module")

FORM = {"Content-Type": "application/x-www-form-urlencoded"}
ORDERS_TOKEN = "orders-token-0123456789abcdef"
NOTIFIER_TOKEN = "notifier-token-0123456789abcdef"
ORDERS = {"Authorization": f"Bearer {ORDERS_TOKEN}"}
NOTIFIER = {"Authorization": f"Bearer {NOTIFIER_TOKEN}"}
CONNECTIONS = 16
# The default: a quarter of limits.max_connections.
ORDERS_IN_FLIGHT = CONNECTIONS // 4


async def start(start_target: StartTarget) -> Target:
    """A gateway of CONNECTIONS connections, whose caller `orders` may send 2 requests a
    second (in bursts of CONNECTIONS) with the default max_in_flight, and `notifier` too."""
    allowed = "apps: [demo], allow: ['* /neuopenapi/*']"
    return await start_target(
        env={"ORDERS_TOKEN": ORDERS_TOKEN, "NOTIFIER_TOKEN": NOTIFIER_TOKEN},
        limits={"max_connections": CONNECTIONS},
        callers=(
            f"{{orders: {{token_env: ORDERS_TOKEN, {allowed}, "
            f"rate_limit: {{requests_per_s: 2, burst: {CONNECTIONS}}}}}, "
            f"notifier: {{token_env: NOTIFIER_TOKEN, {allowed}}}}}"
        ),
    )


async def sandbox(target: Target, method: str, path: str, body: str = "") -> dict[str, Any]:
    answer = await exchange(target.sandbox_port, request_bytes(method, path, body.encode(), FORM))
    assert answer is not None
    assert answer.status == 200, answer
    response: dict[str, Any] = answer.body["response"]
    return response


async def until_each_held_or_answered(
    target: Target, answers: list[asyncio.Task[Answer | None]]
) -> int:
    """Waits until each request is either held at the sandbox or answered; returns how many
    are held."""
    async with asyncio.timeout(15):
        while True:
            hanging = int((await sandbox(target, "GET", "/sandbox/stats"))["hanging"])
            if hanging + sum(answer.done() for answer in answers) >= len(answers):
                return hanging
            await asyncio.sleep(0.01)  # wait-ok: polls the sandbox's count of held requests


async def test_one_caller_waiting_on_trades_cannot_hold_every_connection(
    start_target: StartTarget,
) -> None:
    """As many `tradedetail?wait=30` as the listener has connections, from one caller, each
    held at the platform: the caller gets its max_in_flight of them, the rest 429 at once on
    connections then closed, and another caller and /healthz are served meanwhile."""
    target = await start(start_target)
    # Each wait on a trade of its own, so that each holds a call at the sandbox.
    await sandbox(target, "POST", "/sandbox/faults", f"path={DETAIL}&hang=true")
    connections = [
        await asyncio.open_connection("127.0.0.1", target.port) for _ in range(CONNECTIONS)
    ]
    try:
        for number, (_, writer) in enumerate(connections):
            writer.write(request_bytes("GET", f"{DETAIL}?tradeNo=T{number}&wait=30", b"", ORDERS))
        answers = [asyncio.create_task(read_answer(reader)) for reader, _ in connections]
        held = await until_each_held_or_answered(target, answers)

        # Another caller, and the liveness probe, on connections of their own.
        other = await exchange(target.port, request_bytes("GET", f"{ECHO}?a=1", b"", NOTIFIER))
        assert other is not None, "the other caller's connection closed without an answer"
        assert other.status == 200, other
        health = await exchange(target.port, request_bytes("GET", "/healthz"))
        assert health is not None, "the /healthz connection closed without an answer"
        assert health.status == 200, health

        assert held == ORDERS_IN_FLIGHT
        refused = [answer.result() for answer in answers if answer.done()]
        assert len(refused) == CONNECTIONS - ORDERS_IN_FLIGHT
        for answer in refused:
            assert_refused(answer, 429, "too_many_in_flight")
            assert answer is not None
            assert answer.headers["retry-after"] == "1"
            assert answer.headers["connection"] == "close"
            assert answer.body["responseHeader"]["msg"] == (
                f"caller 'orders' already has {ORDERS_IN_FLIGHT} requests in flight, and "
                f"limits.max_in_flight_per_caller allows {ORDERS_IN_FLIGHT}; retry when one "
                "of them is answered"
            )
        # Refused connections are let go, not kept open.
        for (reader, _), answer in zip(connections, answers, strict=True):
            if answer.done():
                async with asyncio.timeout(5):
                    assert await reader.read() == b""
    finally:
        await exchange(target.sandbox_port, request_bytes("DELETE", "/sandbox/faults"))
        for _, writer in connections:
            writer.close()
