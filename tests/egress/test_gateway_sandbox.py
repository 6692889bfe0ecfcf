"""The gateway with its embedded sandbox: unsigned calls in, the sandbox judges every sign."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from gateway.config.load import from_mapping
from gateway.egress.keys import BASE_URLS
from gateway.runtime.app import create_app
from gateway.sandbox.server import create_sandbox_app
from tests.conftest import guarded
from tests.support.paths import ACTIVITY, CLOSE, DETAIL, NOTIFY, TOKEN, TRADE, USER_INFO
from tests.support.platform_double import APPID, SECRET
from tests.support.rawhttp import raw_request

Client = TestClient[Any, Any]


@pytest.fixture
async def gateway(aiohttp_client: Any) -> Client:
    config = from_mapping(
        {
            "apps": {"demo": {"appid": APPID, "secret_env": "S", "upstream": "sandbox"}},
            "sandbox": {
                "listen": {"port": 0},
                "token_expire_s": 2,
                "notify_attempts": 2,
                "notify_backoff_s": 0.01,
            },
        },
        {"S": SECRET},
    )
    client: Client = await aiohttp_client(guarded(create_app(config)))
    return client


def sandbox_url(gateway: Client) -> str:
    return gateway.app[BASE_URLS]["demo"]


async def sandbox_post(gateway: Client, control: str, **data: str) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(sandbox_url(gateway) + control, data=data) as response,
    ):
        body: dict[str, Any] = await response.json()
        return body


async def ok(response: aiohttp.ClientResponse) -> Any:
    body = await response.json()
    assert body["responseHeader"] == {"status": 200, "msg": "OK"}, body
    return body["response"]


async def refused(response: aiohttp.ClientResponse, status: int, text: str) -> None:
    body = await response.json()
    assert response.status == 200, "the platform's own refusals are relayed as they are"
    assert body["responseHeader"]["status"] == status
    assert text in body["responseHeader"]["msg"]


async def test_every_endpoint_through_the_gateway(gateway: Client) -> None:
    login = (await sandbox_post(gateway, "/sandbox/login", user="alice"))["response"]
    exchange = {
        "code": login["code"],
        "grantType": "authorization_code",
        "scope": "user.info,user.phone",
    }
    token = (await ok(await gateway.post(TOKEN, data=exchange)))["accessToken"]
    await refused(
        await gateway.post(TOKEN, data=exchange),
        400,
        "already exchanged",
    )
    user = await ok(await gateway.get(USER_INFO, params={"accessToken": token}))
    assert user["openId"] == login["openId"]
    trade = {
        "outTradeNo": "o-1",
        "amount": "250",
        "currency": "SAR",
        "openId": user["openId"],
        "notifyUrl": "http://127.0.0.1:9/n",
    }
    trade_no = (await ok(await gateway.post(TRADE, data=trade)))["tradeNo"]
    detail = await ok(await gateway.get(DETAIL, params={"tradeNo": trade_no}))
    assert (detail["transactionStatus"], detail["amountStrWithYuan"]) == (1, "2.50")
    assert await ok(await gateway.post(f"{CLOSE}?tradeNo={trade_no}"))
    await refused(
        await gateway.post(CLOSE, data={"tradeNo": trade_no}),
        409,
        "trade is closed",
    )
    notify = {
        "notifyType": "1",
        "openIds": [user["openId"]],
        "title": "t",
        "text": "x",
        "navigateType": "1",
        "language": "zh_CN",
    }
    assert await ok(await gateway.post(NOTIFY, json=notify))
    activity = {
        "activityId": "a",
        "openIds": user["openId"],
        "color": "000000",
        "templateId": "1",
        "title": "t",
        "text": "x",
        "iconUrl": "https://x.example/i.png",
        "status": "1",
        "validityTime": "60",
        "language": "en_US",
    }
    assert await ok(await gateway.post(ACTIVITY, data=activity))


@pytest.mark.parametrize(
    ("method", "path", "params", "status", "text"),
    [
        pytest.param(
            "POST",
            TOKEN,
            {"code": "nope", "grantType": "authorization_code", "scope": "user.info"},
            400,
            "invalid code",
            id="unknown code",
        ),
        pytest.param(
            "GET",
            USER_INFO,
            {"accessToken": "a.b.c"},
            401,
            "invalid accessToken",
            id="bad token",
        ),
        pytest.param(
            "POST",
            TRADE,
            {"outTradeNo": "bad no", "amount": "-1", "currency": "EUR"},
            400,
            "outTradeNo: only letters",
            id="trade validation",
        ),
        pytest.param(
            "GET",
            DETAIL,
            {"tradeNo": "missing"},
            404,
            "not found",
            id="unknown trade",
        ),
        pytest.param(
            "POST",
            NOTIFY,
            {"navigateType": "2"},
            400,
            "url: required when navigateType is 2",
            id="notify validation",
        ),
        pytest.param(
            "POST",
            ACTIVITY,
            {"status": "7"},
            400,
            "status: must be one of 0, 1",
            id="activity validation",
        ),
    ],
)
async def test_platform_refusals_are_relayed(
    gateway: Client, method: str, path: str, params: dict[str, str], status: int, text: str
) -> None:
    if method == "GET":
        response = await gateway.get(path, params=params)
    else:
        response = await gateway.post(path, data=params)
    if status == 400 and "invalid code" not in text:
        # The doc's parameter rules are checked by the gateway before anything is sent.
        body = await response.json()
        assert (response.status, body["error"]) == (400, "validation_failed")
        assert text in body["responseHeader"]["msg"]
        return
    await refused(response, status, text)


async def test_a_wrong_secret_shows_as_the_platforms_sign_error(
    aiohttp_client: Any, aiohttp_server: Any
) -> None:
    platform = await aiohttp_server(create_sandbox_app({APPID: "the-real-secret"}))
    config = from_mapping(
        {
            "apps": {
                "demo": {"appid": APPID, "secret_env": "S", "upstream": str(platform.make_url(""))}
            }
        },
        {"S": "a-stale-secret"},
    )
    gateway = await aiohttp_client(guarded(create_app(config)))
    response = await gateway.get(DETAIL, params={"tradeNo": "T"})
    await refused(response, 401, "sign error")
    body = await response.text()
    assert "a-stale-secret" not in body
    assert "the-real-secret" not in body


async def test_sandbox_controls_are_not_on_the_gateway_listener(gateway: Client) -> None:
    for path in ("/sandbox/login", "/sandbox/reset", "/sandbox/faults"):
        response = await gateway.post(path, data={"user": "alice"})
        assert response.status == 404
        assert (await response.json())["error"] == "not_found"


async def test_gateway_maps_sandbox_faults(gateway: Client) -> None:
    await sandbox_post(gateway, "/sandbox/faults", path=CLOSE, reset="1")
    response = await gateway.post(CLOSE, data={"tradeNo": "T"})
    assert response.status == 502
    assert (await response.json())["error"] == "upstream_unreachable"


async def test_the_embedded_sandbox_listener_is_guarded_as_the_gateways_are(
    aiohttp_client: Any,
) -> None:
    config = from_mapping(
        {
            "apps": {"demo": {"appid": APPID, "secret_env": "S", "upstream": "sandbox"}},
            "sandbox": {"listen": {"port": 0}},
            "limits": {"max_header_bytes": 1024, "header_timeout_s": 0.3},
        },
        {"S": SECRET},
    )
    gateway: Client = await aiohttp_client(guarded(create_app(config)))
    port = int(sandbox_url(gateway).rsplit(":", 1)[1])
    status, envelope = await raw_request(port, b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 140_000)
    assert (status, envelope["error"]) == (431, "headers_too_large")
    # A header block that never ends is answered 408 once header_timeout_s has passed.
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"GET /neuopenapi/pay/transactions/tradedetail HTTP/1.1\r\nX-Slow: ")
        async with asyncio.timeout(10):
            answer = await reader.read(-1)
    finally:
        writer.close()
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert b'"error": "header_timeout"' in answer
