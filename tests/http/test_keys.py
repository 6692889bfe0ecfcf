"""config_of: a request keeps the config it started with, whatever a reload swaps in."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient

from gateway.config.live import LiveConfig
from gateway.http.keys import LIVE_CONFIG, config_of
from tests.conftest import gateway_config

FIRST = gateway_config("http://127.0.0.1:9", limits={"min_body_rate_bytes_per_s": 1000})
SECOND = gateway_config("http://127.0.0.1:9", limits={"min_body_rate_bytes_per_s": 2000})
STARTED = web.AppKey("started", asyncio.Event)
SWAPPED = web.AppKey("swapped", asyncio.Event)


async def rates(request: web.Request) -> web.Response:
    """The rate its config has, before and after a reload it waits for when told to."""
    before = config_of(request).limits.min_body_rate_bytes_per_s
    if "wait" in request.query:
        request.app[STARTED].set()
        await request.app[SWAPPED].wait()
    after = config_of(request).limits.min_body_rate_bytes_per_s
    return web.json_response([before, after])


async def test_a_request_keeps_its_config_through_a_reload(aiohttp_client: Any) -> None:
    app = web.Application()
    live = LiveConfig(FIRST, 0.0)
    app[LIVE_CONFIG] = live
    app[STARTED], app[SWAPPED] = asyncio.Event(), asyncio.Event()
    app.router.add_get("/", rates)
    client: TestClient[Any, Any] = await aiohttp_client(app)
    in_flight = asyncio.ensure_future(client.get("/?wait"))
    async with asyncio.timeout(10):
        await app[STARTED].wait()
    assert live.swap(SECOND, 1.0) == []
    app[SWAPPED].set()
    async with asyncio.timeout(10):
        assert await (await in_flight).json() == [1000, 1000]
    assert await (await client.get("/")).json() == [2000, 2000]
