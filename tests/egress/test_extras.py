"""The token cache in the gateway, against the embedded sandbox, which refuses a second exchange."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from gateway.config.load import from_mapping
from gateway.egress.keys import BASE_URLS
from gateway.runtime.app import create_app
from tests.conftest import guarded
from tests.support.clock import MutableClock
from tests.support.paths import TOKEN, USER_INFO
from tests.support.platform_double import APPID, SECRET

Client = TestClient[Any, Any]


@pytest.fixture
def clock() -> MutableClock:
    return MutableClock()


async def make_gateway(aiohttp_client: Any, clock: MutableClock, **cache: Any) -> Client:
    config = from_mapping(
        {
            "apps": {"demo": {"appid": APPID, "secret_env": "S", "upstream": "sandbox"}},
            "sandbox": {"listen": {"port": 0}, "token_expire_s": 2},
            "cache": {"safety_margin_s": 0, **cache},
        },
        {"S": SECRET},
    )
    client: Client = await aiohttp_client(guarded(create_app(config, clock=clock)))
    return client


@pytest.fixture
async def gateway(aiohttp_client: Any, clock: MutableClock) -> Client:
    return await make_gateway(aiohttp_client, clock)


async def sandbox(gateway: Client, method: str, control: str, **data: str) -> Any:
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, gateway.app[BASE_URLS]["demo"] + control, data=data) as response,
    ):
        return (await response.json())["response"]


async def exchanges_seen(gateway: Client) -> int:
    calls: dict[str, int] = (await sandbox(gateway, "GET", "/sandbox/stats"))["calls"]
    return calls.get(TOKEN, 0)


async def exchange(gateway: Client, code: str) -> tuple[aiohttp.ClientResponse, dict[str, Any]]:
    response = await gateway.post(
        TOKEN, data={"code": code, "grantType": "authorization_code", "scope": "user.info"}
    )
    body: dict[str, Any] = await response.json()
    return response, body


async def test_repeated_exchange_reaches_the_platform_once(gateway: Client) -> None:
    code = (await sandbox(gateway, "POST", "/sandbox/login", user="alice"))["code"]
    first, first_body = await exchange(gateway, code)
    again, again_body = await exchange(gateway, code)
    assert first_body["responseHeader"]["status"] == 200
    assert again_body == first_body
    assert (first.headers["X-Neu-Cache"], again.headers["X-Neu-Cache"]) == ("miss", "hit")
    assert await exchanges_seen(gateway) == 1


async def test_twenty_concurrent_exchanges_make_one_upstream_call(gateway: Client) -> None:
    code = (await sandbox(gateway, "POST", "/sandbox/login", user="alice"))["code"]
    results = await asyncio.gather(*(exchange(gateway, code) for _ in range(20)))
    tokens = {body["response"]["accessToken"] for _, body in results}
    assert len(tokens) == 1
    assert await exchanges_seen(gateway) == 1


async def test_concurrent_exchanges_say_they_shared_one_call(gateway: Client) -> None:
    """A waiter on another request's exchange gets `shared`, success or failure, never `hit`."""
    code = (await sandbox(gateway, "POST", "/sandbox/login", user="alice"))["code"]
    for sent in (code, "never-issued"):
        results = await asyncio.gather(*(exchange(gateway, sent) for _ in range(10)))
        labels = sorted(response.headers["X-Neu-Cache"] for response, _ in results)
        assert labels == ["miss"] + ["shared"] * 9, sent
    assert await exchanges_seen(gateway) == 2


async def test_a_failed_exchange_is_relayed_and_not_cached(gateway: Client) -> None:
    for _ in range(2):
        _, body = await exchange(gateway, "never-issued")
        assert body["responseHeader"] == {
            "status": 400,
            "msg": "invalid code: not issued to this app",
        }
    assert await exchanges_seen(gateway) == 2


async def test_user_info_by_open_id(gateway: Client) -> None:
    login = await sandbox(gateway, "POST", "/sandbox/login", user="alice")
    await exchange(gateway, login["code"])
    response = await gateway.get(USER_INFO, params={"openId": login["openId"]})
    body = await response.json()
    assert body["responseHeader"]["status"] == 200
    assert body["response"]["openId"] == login["openId"]
    assert response.headers["X-Neu-Cache"] == "hit"


async def test_user_info_for_an_unknown_open_id_is_401(gateway: Client) -> None:
    response = await gateway.get(USER_INFO, params={"openId": "nobody"})
    assert response.status == 401
    body = await response.json()
    assert body["error"] == "token_required"
    assert "exchange the user's login code" in body["responseHeader"]["msg"]
    assert await exchanges_seen(gateway) == 0


async def test_a_caller_supplied_token_is_used_as_given(gateway: Client) -> None:
    login = await sandbox(gateway, "POST", "/sandbox/login", user="alice")
    await exchange(gateway, login["code"])
    response = await gateway.get(
        USER_INFO, params={"openId": login["openId"], "accessToken": "x.y.z"}
    )
    body = await response.json()
    assert body["responseHeader"]["status"] == 401
    assert "X-Neu-Cache" not in response.headers


async def test_a_two_second_token_is_not_served_after_it_expires(
    gateway: Client, clock: MutableClock
) -> None:
    login = await sandbox(gateway, "POST", "/sandbox/login", user="alice")
    await exchange(gateway, login["code"])
    # The JWT's exp is in whole seconds, so the token lives between 1 and 2 seconds.
    clock.advance(0.5)
    assert (await gateway.get(USER_INFO, params={"openId": login["openId"]})).status == 200
    clock.advance(1.5)
    response = await gateway.get(USER_INFO, params={"openId": login["openId"]})
    assert (response.status, (await response.json())["error"]) == (401, "token_required")


async def test_a_token_the_platform_refuses_is_evicted(gateway: Client) -> None:
    login = await sandbox(gateway, "POST", "/sandbox/login", user="alice")
    await exchange(gateway, login["code"])
    await sandbox(gateway, "POST", "/sandbox/reset")
    refused = await (await gateway.get(USER_INFO, params={"openId": login["openId"]})).json()
    assert refused["responseHeader"]["status"] == 401
    response = await gateway.get(USER_INFO, params={"openId": login["openId"]})
    assert (response.status, (await response.json())["error"]) == (401, "token_required")
    _, again = await exchange(gateway, login["code"])
    assert again["responseHeader"]["status"] == 400, "the evicted exchange answer is gone too"


async def test_the_memory_cache_is_bounded(aiohttp_client: Any, clock: MutableClock) -> None:
    gateway = await make_gateway(aiohttp_client, clock, max_entries=2)
    logins = [await sandbox(gateway, "POST", "/sandbox/login", user=u) for u in ("a", "b", "c")]
    for login in logins:
        await exchange(gateway, login["code"])
    oldest = await gateway.get(USER_INFO, params={"openId": logins[0]["openId"]})
    newest = await gateway.get(USER_INFO, params={"openId": logins[2]["openId"]})
    assert (oldest.status, newest.status) == (401, 200)


async def test_codes_and_tokens_never_reach_the_log(
    gateway: Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    login = await sandbox(gateway, "POST", "/sandbox/login", user="alice")
    _, body = await exchange(gateway, login["code"])
    await sandbox(gateway, "POST", "/sandbox/reset")
    await gateway.get(USER_INFO, params={"openId": login["openId"]})
    assert "evicted" in caplog.text
    assert login["code"] not in caplog.text
    assert body["response"]["accessToken"] not in caplog.text


async def test_a_unix_socket_redis_url_starts_the_gateway(
    aiohttp_client: Any, clock: MutableClock, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "neu_gateway")
    socket_path = tmp_path / "redis.sock"
    gateway = await make_gateway(
        aiohttp_client, clock, backend="redis", url=f"unix://{socket_path}?db=0"
    )
    assert (await gateway.get("/healthz")).status == 200
    assert f"token cache: redis at unix://{socket_path}, keys under 'neu:'" in caplog.text
