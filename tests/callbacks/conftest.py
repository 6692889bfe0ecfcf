"""A gateway with its callbacks listener, its outbox in a temporary SQLite file, and the
embedded sandbox as the platform; and how the tests here act as the platform and the payer."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from gateway.callbacks.outbox import SqliteOutbox
from gateway.config.load import from_mapping
from gateway.core import signing
from gateway.core.platform import TRADE_DETAIL_PATH
from gateway.egress.keys import BASE_URLS
from gateway.runtime.app import create_app
from gateway.runtime.keys import CALLBACKS_URL
from tests.conftest import guarded
from tests.support.paths import TRADE
from tests.support.platform_double import APPID, SECRET
from tests.support.receiver import CallbackReceiver

Client = TestClient[Any, Any]
DETAIL = TRADE_DETAIL_PATH


def config_for(tmp_path: Path, receiver: CallbackReceiver, **extra: Any) -> dict[str, Any]:
    verify_sign = extra.pop("verify_sign", True)
    return {
        "apps": {
            "demo": {
                "appid": APPID,
                "secret_env": "S",
                "upstream": "sandbox",
                "callbacks": {"verify_sign": verify_sign, "deliver_to": receiver.url},
            }
        },
        "sandbox": {"listen": {"port": 0}, "notify_backoff_s": 0.05},
        "callbacks": {
            "listen": {"port": 0},
            "store": f"sqlite://{tmp_path}/outbox.db",
            "backoff_s": 0.05,
            "max_backoff_s": 0.2,
            "max_attempts": 4,
        },
        **extra,
    }


@pytest.fixture
async def gateway(aiohttp_client: Any, tmp_path: Path, receiver: CallbackReceiver) -> Client:
    config = from_mapping(config_for(tmp_path, receiver), {"S": SECRET})
    client: Client = await aiohttp_client(guarded(create_app(config)))
    return client


class Sandbox:
    def __init__(self, gateway: Client) -> None:
        self.gateway = gateway
        self.url = gateway.app[BASE_URLS]["demo"]
        self.notify_url = (
            gateway.app.get(CALLBACKS_URL, "http://127.0.0.1:9") + "/callbacks/demo/pay"
        )

    async def control(self, method: str, path: str, **data: str) -> Any:
        async with (
            aiohttp.ClientSession() as session,
            session.request(method, self.url + path, data=data) as response,
        ):
            return (await response.json())["response"]

    async def new_trade(self, notify_url: str | None = None) -> str:
        login = await self.control("POST", "/sandbox/login", user="payer", appid=APPID)
        trade = {
            "outTradeNo": f"o-{time.time_ns()}",
            "amount": "100",
            "currency": "USD",
            "openId": login["openId"],
            "notifyUrl": notify_url or self.notify_url,
        }
        response = await self.gateway.post(TRADE, data=trade)
        trade_no: str = (await response.json())["response"]["tradeNo"]
        return trade_no

    async def pay(self, trade_no: str, result: str = "succeeded") -> None:
        await self.control("POST", f"/sandbox/trades/{trade_no}/pay", result=result)

    async def detail_calls(self) -> int:
        calls: dict[str, int] = (await self.control("GET", "/sandbox/stats"))["calls"]
        return calls.get(DETAIL, 0)


def signed_callback(
    trade_no: str, status: str, secret: str = SECRET, **extra: str
) -> dict[str, str]:
    fields = {
        "tradeNo": trade_no,
        "outTradeNo": "o",
        "transactionStatus": status,
        "amount": "100",
        "currency": "USD",
        "appid": APPID,
        "timestamp": str(time.time_ns() // 1_000_000),
        **extra,
    }
    fields["sign"] = signing.sign(fields, secret)
    return fields


async def post_callback(sandbox: Sandbox, fields: dict[str, str]) -> tuple[int, dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(sandbox.notify_url, data=fields) as response,
    ):
        return response.status, await response.json()


async def outbox_settles(tmp_path: Path, expected: list[tuple[str, int, str]]) -> None:
    """Waits until the outbox holds `expected`: the worker records a delivery after it."""
    for _ in range(250):
        if await outbox_states(tmp_path) == expected:
            return
        await asyncio.sleep(0.02)  # wait-ok: polls the outbox file for the condition
    assert await outbox_states(tmp_path) == expected


async def outbox_states(tmp_path: Path) -> list[tuple[str, int, str]]:
    outbox = SqliteOutbox(tmp_path / "outbox.db")
    try:
        rows = await outbox.listing(("pending", "delivered", "dead"))
    finally:
        await outbox.close()
    return [(row.trade_no, row.status, row.state) for row in rows]
