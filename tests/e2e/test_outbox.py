"""The outbox across a crash, and the `callbacks` commands, with the real gateway process."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from gateway.callbacks.outbox import SqliteOutbox
from gateway.sandbox.server import create_sandbox_app
from gateway.sandbox.world import Settings
from tests.support.paths import TRADE
from tests.support.platform_double import APPID, SECRET
from tests.support.processes import (
    ENV_SECRET,
    GatewayProcess,
    StartGateway,
    neu_gateway,
    write_config,
)
from tests.support.receiver import CallbackReceiver

pytestmark = pytest.mark.e2e


@pytest.fixture
async def platform(aiohttp_server: Any) -> TestServer:
    app = create_sandbox_app({APPID: SECRET}, Settings(notify_backoff_s=0.05, notify_attempts=3))
    server: TestServer = await aiohttp_server(app)
    return server


def outbox_config(
    tmp_path: Path, platform: TestServer, receiver: CallbackReceiver, attempts: int
) -> Path:
    return write_config(
        tmp_path,
        str(platform.make_url("")).rstrip("/"),
        app_callbacks=f"{{verify_sign: true, deliver_to: '{receiver.url}'}}",
        callbacks=(
            f"{{listen: {{port: 0}}, store: 'sqlite://{tmp_path}/outbox.db', backoff_s: 0.05, "
            f"max_backoff_s: 0.1, max_attempts: {attempts}, timeout_s: 1}}"
        ),
    )


async def paid_trade(platform: TestServer, gateway: GatewayProcess) -> str:
    base = str(platform.make_url("")).rstrip("/")
    async with aiohttp.ClientSession() as session:
        async with session.post(base + "/sandbox/login", data={"user": "payer"}) as response:
            open_id = (await response.json())["response"]["openId"]
        trade = {
            "outTradeNo": "order-1",
            "amount": "500",
            "currency": "SGD",
            "openId": open_id,
            "notifyUrl": gateway.callbacks_url + "/callbacks/demo/pay",
        }
        async with session.post(gateway.url + TRADE, data=trade) as r:
            trade_no: str = (await r.json())["response"]["tradeNo"]
        async with session.post(
            f"{base}/sandbox/trades/{trade_no}/pay", data={"result": "succeeded"}
        ):
            pass
    return trade_no


async def states(tmp_path: Path) -> list[tuple[int, str]]:
    outbox = SqliteOutbox(tmp_path / "outbox.db")
    try:
        return [(d.id, d.state) for d in await outbox.listing(("pending", "delivered", "dead"))]
    finally:
        await outbox.close()


async def until_state(tmp_path: Path, state: str) -> int:
    for _ in range(500):
        rows = await states(tmp_path)
        if rows and rows[0][1] == state:
            return rows[0][0]
        await asyncio.sleep(0.02)  # wait-ok: polls the outbox file for the condition
    raise AssertionError(f"outbox never reached {state}: {await states(tmp_path)}")


async def test_a_callback_accepted_before_a_crash_is_delivered_once_after_it(
    tmp_path: Path, start_gateway: StartGateway, platform: TestServer, receiver: CallbackReceiver
) -> None:
    config = outbox_config(tmp_path, platform, receiver, attempts=1000)
    receiver.fail_first = 10_000
    first = await start_gateway(config)
    trade_no = await paid_trade(platform, first)
    await receiver.wait_for(1)  # accepted, stored, and tried once
    first.process.kill()  # SIGKILL: no chance to finish anything
    await first.process.wait()
    receiver.fail_first = 0
    await start_gateway(config)
    # Sent again once the dead process's lease on it (2 * timeout_s + 1) has run out.
    await receiver.wait_accepted(1, timeout_s=20)
    await until_state(tmp_path, "delivered")
    assert receiver.accepted == 1
    assert {h["Idempotency-Key"] for h in receiver.headers} == {f"{trade_no}:2"}


async def test_list_and_replay_a_dead_delivery(
    tmp_path: Path, start_gateway: StartGateway, platform: TestServer, receiver: CallbackReceiver
) -> None:
    config = outbox_config(tmp_path, platform, receiver, attempts=2)
    receiver.fail_first = 10_000
    gateway = await start_gateway(config)
    trade_no = await paid_trade(platform, gateway)
    delivery_id = await until_state(tmp_path, "dead")
    listed = await neu_gateway("callbacks", "list", "-c", str(config), env=ENV_SECRET)
    assert listed.status == 0, listed.stderr
    assert re.search(rf"\b{delivery_id}\s+dead\s+demo\s+{trade_no}:2\s+2\s+HTTP 500", listed.stdout)
    receiver.fail_first = 0
    replayed = await neu_gateway(
        "callbacks", "replay", str(delivery_id), "-c", str(config), env=ENV_SECRET
    )
    assert replayed.status == 0
    await receiver.wait_accepted(1)
    await until_state(tmp_path, "delivered")
    after = await neu_gateway("callbacks", "list", "-c", str(config), env=ENV_SECRET)
    assert "0 pending or dead" in after.stdout
    missing = await neu_gateway("callbacks", "replay", "999", "-c", str(config), env=ENV_SECRET)
    assert (missing.status, "no delivery 999" in missing.stderr) == (1, True)
