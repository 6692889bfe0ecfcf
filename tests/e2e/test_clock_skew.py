"""A gateway whose clock is 10 minutes off the platform's still gets every call through:
it learns the platform's time from its Date headers and signs with it."""

from __future__ import annotations

import glob
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support.paths import DETAIL, NOTIFY, TOKEN, TRADE
from tests.support.platform_double import APPID, SECRET
from tests.support.ports import free_port
from tests.support.processes import (
    GatewayProcess,
    StartCommand,
    StartGateway,
    neu_gateway,
    write_config,
)

ENV = {"NEU_SECRET_DEMO": SECRET}

pytestmark = pytest.mark.e2e

TEN_MINUTES_S = 600


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


async def envelope(response: aiohttp.ClientResponse) -> Any:
    body = await response.json()
    assert body["responseHeader"]["status"] == 200, body
    return body["response"]


async def mini_app_story(
    session: aiohttp.ClientSession, gateway_url: str, sandbox_url: str
) -> None:
    """Exchange, trade, tradedetail and sendNotify through the gateway, all answered 200."""
    async with session.post(
        sandbox_url + "/sandbox/login", data={"user": "13800138000", "appid": APPID}
    ) as response:
        login = await envelope(response)
    open_id = login["openId"]
    async with session.post(
        gateway_url + TOKEN,
        data={"code": login["code"], "grantType": "authorization_code", "scope": "user.info"},
    ) as response:
        assert (await envelope(response))["accessToken"]
    out_trade_no = f"order-{time.time_ns()}"
    async with session.post(
        gateway_url + TRADE,
        data={
            "outTradeNo": out_trade_no,
            "amount": "1999",
            "currency": "SAR",
            "openId": open_id,
            "notifyUrl": "http://127.0.0.1:9/unused",
        },
    ) as response:
        trade_no = (await envelope(response))["tradeNo"]
    async with session.get(gateway_url + DETAIL, params={"tradeNo": trade_no}) as response:
        assert (await envelope(response))["outTradeNo"] == out_trade_no
    async with session.post(
        gateway_url + NOTIFY,
        data={
            "openIds": open_id,
            "notifyType": "1",
            "navigateType": "2",
            "url": "https://shop.example.com/orders/1",
            "title": "Paid",
            "text": "Order 1 is paid",
            "language": "en_US",
        },
    ) as response:
        await envelope(response)
    # Created once: had a refused attempt created it, the resend would have been refused as
    # a duplicate outTradeNo.
    async with session.get(sandbox_url + f"/sandbox/trades/{trade_no}") as response:
        assert (await envelope(response))["detail"]["outTradeNo"] == out_trade_no


async def test_a_gateway_ten_minutes_behind_the_platform(
    start_command: StartCommand,
    start_gateway: StartGateway,
    tmp_path: Path,
    session: aiohttp.ClientSession,
) -> None:
    sandbox = await start_command(
        "sandbox", "--port", "0", "--app", f"{APPID}={SECRET}", ready_when="sandbox"
    )
    config = write_config(tmp_path, upstream=sandbox.url)
    # libfaketime preloaded into the gateway itself (the `faketime` wrapper would keep the
    # stop signal from it): wall time 10 minutes behind, monotonic time untouched.
    [library] = glob.glob("/usr/lib/*/faketime/libfaketime.so.1")
    gateway = await start_command(
        "serve",
        "-c",
        str(config),
        env={
            "LD_PRELOAD": library,
            "FAKETIME": f"-{TEN_MINUTES_S // 60}m",
            "FAKETIME_DONT_FAKE_MONOTONIC": "1",
        },
    )
    await mini_app_story(session, gateway.url, sandbox.url)
    await gateway.wait_for_log("signing with the platform's time")
    await assert_offset(session, gateway, TEN_MINUTES_S)


async def test_a_platform_ten_minutes_ahead(
    start_gateway: StartGateway, tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    config = write_config(tmp_path)
    config.write_text(
        config.read_text().replace(
            "sandbox: {listen: {port: 0}",
            f"sandbox: {{clock_offset_s: {TEN_MINUTES_S}, listen: {{port: 0}}",
        )
    )
    gateway = await start_gateway(config)
    await mini_app_story(session, gateway.url, gateway.sandbox_url)
    await gateway.wait_for_log("signing with the platform's time")
    await assert_offset(session, gateway, TEN_MINUTES_S)


async def assert_offset(
    session: aiohttp.ClientSession, gateway: GatewayProcess, expected_s: float
) -> None:
    async with session.get(gateway.url + "/metrics") as response:
        text = await response.text()
    [line] = [
        line for line in text.splitlines() if line.startswith("neu_gateway_clock_offset_seconds{")
    ]
    assert abs(float(line.rsplit(" ", 1)[1]) - expected_s) < 5, line


async def test_check_config_probe_reports_the_offset(
    start_command: StartCommand, tmp_path: Path
) -> None:
    sandbox = await start_command(
        "sandbox",
        "--port",
        "0",
        "--app",
        f"{APPID}={SECRET}",
        "--clock-offset-s",
        "-600",
        ready_when="sandbox",
    )
    config = write_config(tmp_path, upstream=sandbox.url)
    result = await neu_gateway("check-config", "--probe", "-c", str(config), env=ENV)
    assert result.status == 0, result.stderr
    line, sign = [line for line in result.stdout.splitlines() if "probe: app demo" in line]
    assert "answered HTTP" in line
    # Signed on the platform's time, ten minutes behind this host's.
    assert sign.startswith("  probe: app demo: sign accepted"), sign
    offset = re.search(r"the platform's clock is ([-+][0-9.]+) s", line)
    assert offset is not None, line
    assert abs(float(offset.group(1)) + 600) < 3, line
    assert "signs with the platform's time" in line
    closed = write_config(tmp_path / "closed", upstream=f"http://127.0.0.1:{free_port()}")
    result = await neu_gateway("check-config", "--probe", "-c", str(closed), env=ENV)
    assert result.status == 1
    assert "failed: the platform could not be reached" in result.stdout
    # The platform rotated the secret; this host's is the old one.
    rotated = await neu_gateway(
        "check-config", "--probe", "-c", str(config), env={"NEU_SECRET_DEMO": "a-retired-one"}
    )
    assert rotated.status == 1, rotated.stderr
    assert (
        "  probe: app demo: the platform refused the sign: the secret for apps.demo is wrong "
        "(or was rotated on the platform)"
    ) in rotated.stdout.splitlines()
    assert "a-retired-one" not in rotated.stdout + rotated.stderr
