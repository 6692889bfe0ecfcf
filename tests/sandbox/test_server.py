"""The sandbox application: every refusal in the platform's envelope (HTTP 200 under
/neuopenapi/, the status on the wire elsewhere), answers dated by the platform's clock, its
limits, and what it stops when it stops."""

from __future__ import annotations

import io
from email.utils import formatdate
from typing import Any

from aiohttp import FormData
from aiohttp.test_utils import TestClient, TestServer

from gateway.core.endpoints import TRADE, TRADE_DETAIL
from gateway.sandbox.controls import TIMERS
from gateway.sandbox.server import MAX_LINE_BYTES, OffsetClock, create_sandbox_app
from gateway.sandbox.world import Settings
from tests.sandbox.conftest import header
from tests.support.clock import MutableClock
from tests.support.paths import SANDBOX_ECHO
from tests.support.platform_double import APPID, SECRET
from tests.support.sandbox_client import SECRETS, call, login, signed

Client = TestClient[Any, Any]


async def test_the_platforms_clock_is_the_hosts_moved_by_the_offset() -> None:
    host = MutableClock()
    ahead = OffsetClock(host, 90.5)
    assert ahead.now_ms() == host.now_ms() + 90_500
    assert ahead.monotonic() - host.monotonic() < 1
    host.advance(1)
    assert ahead.now_ms() == host.now_ms() + 90_500
    await ahead.sleep(0)


async def test_every_answer_is_dated_by_the_platforms_clock(aiohttp_client: Any) -> None:
    clock = MutableClock()
    sandbox = await aiohttp_client(
        create_sandbox_app(SECRETS, Settings(clock_offset_s=-3600), clock)
    )
    expected = formatdate((clock.now - 3_600_000) / 1000, usegmt=True)
    for path in ("/sandbox/stats", "/sandbox/nothing", TRADE_DETAIL.path):
        assert (await sandbox.get(path)).headers["Date"] == expected, path
    platform_time = await call(
        sandbox, "GET", TRADE_DETAIL.path, {"tradeNo": "T"}, now_ms=clock.now
    )
    assert "behind the platform's clock" not in header(platform_time)[1]
    assert "ahead of the platform's clock" in header(platform_time)[1]


async def test_an_openapi_refusal_is_http_200_and_a_controls_is_its_status(
    sandbox: Client,
) -> None:
    platform = await sandbox.get(TRADE_DETAIL.path, params=signed({}))
    assert (platform.status, header(await platform.json())) == (
        200,
        (400, "invalid parameters: tradeNo: required"),
    )
    control = await sandbox.post("/sandbox/login", data={"user": "a", "appid": "nope"})
    assert (control.status, await control.json()) == (
        404,
        {"responseHeader": {"status": 404, "msg": "unknown appid 'nope'"}, "response": None},
    )


async def test_the_routers_own_refusals_are_in_the_envelope(sandbox: Client) -> None:
    missing = await sandbox.get("/sandbox/nothing")
    assert (missing.status, header(await missing.json())) == (404, (404, "Not Found"))
    wrong_method = await sandbox.get("/sandbox/login")
    assert (wrong_method.status, header(await wrong_method.json())) == (
        405,
        (405, "Method Not Allowed"),
    )


async def test_header_lines_as_long_as_any_gateway_forwards_are_read(sandbox: Client) -> None:
    long_value = "v" * (MAX_LINE_BYTES - 100)
    response = await sandbox.get(
        TRADE_DETAIL.path, params=signed({"tradeNo": "T"}), headers={"X-Long": long_value}
    )
    assert header(await response.json()) == (404, "trade 'T' not found")


async def test_an_upload_above_aiohttps_default_body_size_is_read(sandbox: Client) -> None:
    form = FormData()
    for key, value in signed({}).items():
        form.add_field(key, value)
    form.add_field("fileData", io.BytesIO(b"x" * (3 << 20)), filename="big.bin")
    body = await (await sandbox.post(SANDBOX_ECHO, data=form)).json()
    assert body["response"]["files"][0]["size"] == 3 << 20


async def test_the_stop_cancels_the_expiry_timers() -> None:
    app = create_sandbox_app({APPID: SECRET}, Settings())
    async with TestClient(TestServer(app)) as sandbox:
        open_id = (await login(sandbox, "payer"))["openId"]
        trade = {
            "outTradeNo": "o-1",
            "amount": "1",
            "currency": "USD",
            "openId": open_id,
            "notifyUrl": "http://127.0.0.1:9/n",
            "timeExpire": str(MutableClock().now + 3_600_000),
        }
        assert header(await call(sandbox, "POST", TRADE.path, trade)) == (200, "OK")
        [timer] = app[TIMERS]
        assert not timer.cancelled()
    assert timer.cancelled()


async def test_the_embedders_api_is_served_from_here() -> None:
    from gateway.sandbox import server

    assert {"create_sandbox_app", "sandbox_appids", "set_secret", "MAX_LINE_BYTES"} <= set(
        server.__all__
    )
