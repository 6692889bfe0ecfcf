"""Several gateway processes sharing one real Redis, in front of one sandbox platform."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from gateway.sandbox.server import create_sandbox_app
from tests.support.paths import TOKEN, USER_INFO
from tests.support.platform_double import APPID, SECRET
from tests.support.processes import GatewayProcess, StartGateway, write_config
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.e2e
RECOVERY_POLLS = 100


@pytest.fixture
async def platform(aiohttp_server: Any) -> TestServer:
    server: TestServer = await aiohttp_server(create_sandbox_app({APPID: SECRET}))
    return server


def platform_url(platform: TestServer) -> str:
    return str(platform.make_url("")).rstrip("/")


async def start_replica(
    start_gateway: StartGateway, directory: Path, platform: TestServer, redis: RedisServer
) -> GatewayProcess:
    cache = f"{{backend: redis, url: '{redis.url}', key_prefix: 'neu:', safety_margin_s: 0}}"
    return await start_gateway(write_config(directory, platform_url(platform), cache=cache))


async def control(
    session: aiohttp.ClientSession, platform: TestServer, method: str, path: str, **data: str
) -> Any:
    async with session.request(method, platform_url(platform) + path, data=data) as response:
        return (await response.json())["response"]


async def exchange(
    session: aiohttp.ClientSession, gateway: GatewayProcess, code: str
) -> dict[str, Any]:
    data = {"code": code, "grantType": "authorization_code", "scope": "user.info"}
    async with session.post(gateway.url + TOKEN, data=data) as response:
        body: dict[str, Any] = await response.json()
        return body


async def user_info(
    session: aiohttp.ClientSession, gateway: GatewayProcess, open_id: str
) -> tuple[int, dict[str, Any]]:
    async with session.get(gateway.url + USER_INFO, params={"openId": open_id}) as response:
        return response.status, await response.json()


async def test_two_replicas_exchange_one_code_once(
    tmp_path: Path, start_gateway: StartGateway, redis_server: RedisServer, platform: TestServer
) -> None:
    replicas = [
        await start_replica(start_gateway, tmp_path / name, platform, redis_server)
        for name in ("a", "b")
    ]
    async with aiohttp.ClientSession() as session:
        login = await control(session, platform, "POST", "/sandbox/login", user="alice")
        answers = await asyncio.gather(
            *(exchange(session, replicas[i % 2], login["code"]) for i in range(20))
        )
        assert {a["responseHeader"]["status"] for a in answers} == {200}
        assert len({a["response"]["accessToken"] for a in answers}) == 1
        stats = await control(session, platform, "GET", "/sandbox/stats")
        assert stats["calls"][TOKEN] == 1
        for replica in replicas:
            status, body = await user_info(session, replica, login["openId"])
            assert (status, body["response"]["openId"]) == (200, login["openId"])


async def test_redis_outage_degrades_and_recovers(
    tmp_path: Path, start_gateway: StartGateway, redis_server: RedisServer, platform: TestServer
) -> None:
    gateway = await start_replica(start_gateway, tmp_path / "a", platform, redis_server)
    async with aiohttp.ClientSession() as session:
        before = await control(session, platform, "POST", "/sandbox/login", user="alice")
        await exchange(session, gateway, before["code"])
        assert (await user_info(session, gateway, before["openId"]))[0] == 200

        await redis_server.stop()
        during = await control(session, platform, "POST", "/sandbox/login", user="bob")
        answer = await exchange(session, gateway, during["code"])
        assert answer["responseHeader"]["status"] == 200, "exchanges go straight to the platform"
        status, body = await user_info(session, gateway, before["openId"])
        assert (status, body["error"]) == (503, "cache_unavailable")
        await gateway.wait_for_log("token cache store unavailable")

        await redis_server.start()
        for _ in range(RECOVERY_POLLS):
            after = await control(session, platform, "POST", "/sandbox/login", user="carol")
            await exchange(session, gateway, after["code"])
            if (await user_info(session, gateway, after["openId"]))[0] == 200:
                break
            await asyncio.sleep(0.1)  # wait-ok: the gateway retries Redis once a second
        else:
            raise AssertionError("the gateway never used Redis again")
    await gateway.wait_for_log("token cache store is back")
    assert gateway.log.count("token cache store unavailable") == 1
