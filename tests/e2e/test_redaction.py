"""A whole flow at DEBUG: no credential may show in any log line or anything the gateway makes."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support.paths import DETAIL, ECHO, TOKEN, TRADE, USER_INFO
from tests.support.platform_double import SECRET
from tests.support.processes import StartGateway, write_config

pytestmark = pytest.mark.e2e
CALLER_TOKEN = "caller-token-a1b2c3d4e5f6a7b8c9d0"
PHONE = "13800138000"
_SIGN_SHAPE = re.compile(r"[0-9a-f]{64}")


async def test_no_credential_reaches_the_log_or_a_gateway_answer(
    tmp_path: Path, start_gateway: StartGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORDERS_TOKEN", CALLER_TOKEN)
    config = write_config(
        tmp_path,
        callers="{app: {token_env: ORDERS_TOKEN, apps: [demo], allow: ['* /neuopenapi/*']}}",
    )
    gateway = await start_gateway(config)
    auth = {"Authorization": f"Bearer {CALLER_TOKEN}"}
    made_by_gateway: list[str] = []
    credentials: list[str] = [SECRET, CALLER_TOKEN, PHONE]

    async with aiohttp.ClientSession() as session:

        async def call(method: str, path: str, **kwargs: Any) -> dict[str, Any]:
            async with session.request(method, gateway.url + path, **kwargs) as response:
                body: dict[str, Any] = await response.json()
                made_by_gateway.append(str(dict(response.headers)))
                if "error" in body:
                    made_by_gateway.append(str(body))
                return body

        async with session.post(gateway.sandbox_url + "/sandbox/login", data={"user": PHONE}) as r:
            login = (await r.json())["response"]
        credentials.append(login["code"])
        exchange = {
            "code": login["code"],
            "grantType": "authorization_code",
            "scope": "user.info,user.phone",
        }
        token = (await call("POST", TOKEN, data=exchange, headers=auth))["response"]["accessToken"]
        credentials.append(token)
        await call("POST", TOKEN, data=exchange, headers=auth)
        info = await call("GET", USER_INFO, params={"accessToken": token}, headers=auth)
        assert info["response"]["phone"] == PHONE
        await call(
            "GET",
            USER_INFO,
            params={"openId": login["openId"]},
            headers=auth,
        )
        trade = {
            "outTradeNo": "o-1",
            "amount": "100",
            "currency": "USD",
            "openId": login["openId"],
            "notifyUrl": "http://127.0.0.1:9/notify",
        }
        await call("POST", TRADE, data=trade, headers=auth)
        # Refusals the gateway makes itself, each holding a credential in the request.
        await call(
            "GET",
            DETAIL,
            params={"tradeNo": "x"},
            headers={"Authorization": f"Bearer {CALLER_TOKEN}x"},
        )
        await call("POST", ECHO, data={"secret": SECRET}, headers=auth)
        await call("POST", ECHO, data={"code": login["code"], "x": "%zz"}, headers=auth)
        await call(
            "POST",
            ECHO,
            headers={**auth, "Content-Type": "application/json"},
            data=f'{{"accessToken": {{"nested": "{token}"}}}}',
        )
        await call("GET", USER_INFO, params={"openId": "nobody"}, headers=auth)

    await gateway.wait_for_log("route=/neuopenapi/oauth/mini/user/info status=401")
    for credential in credentials:
        assert credential not in gateway.log, credential[:6]
        for made in made_by_gateway:
            assert credential not in made, credential[:6]
    assert not _SIGN_SHAPE.search(gateway.log), "a sign reached the log"
    assert len(gateway.log_lines) >= 10
