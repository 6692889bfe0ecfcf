"""Safe retries, the breaker and validation: off, against a platform that answers as scripted."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from gateway.core import signing
from gateway.runtime.app import create_app
from tests.conftest import gateway_config, guarded
from tests.support.clock import MutableClock
from tests.support.paths import DETAIL, TRADE
from tests.support.platform_double import APPID, SECRET
from tests.support.scripted_platform import Scripted

Client = TestClient[Any, Any]


class TickingClock(MutableClock):
    """Each reading a millisecond on: attempts made within one millisecond still differ."""

    def now_ms(self) -> int:
        self.now += 1
        return self.now


@asynccontextmanager
async def scripted_gateway(
    aiohttp_client: Any,
    aiohttp_server: Any,
    clock: MutableClock | None = None,
    validation: str = "doc",
    **overrides: Any,
) -> AsyncIterator[tuple[Client, Scripted]]:
    platform = Scripted()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", platform.handle)
    server = await aiohttp_server(app)
    upstream = str(server.make_url("")).rstrip("/")
    demo = {"appid": APPID, "secret_env": "DEMO_SECRET", "upstream": upstream}
    config = gateway_config(
        upstream, apps={"demo": {**demo, "validation": validation}}, **overrides
    )
    client: Client = await aiohttp_client(guarded(create_app(config, clock=clock)))
    yield client, platform


async def test_a_get_that_meets_a_503_is_asked_again_signed_afresh(
    aiohttp_client: Any, aiohttp_server: Any
) -> None:
    async with scripted_gateway(aiohttp_client, aiohttp_server, TickingClock()) as (
        gateway,
        platform,
    ):
        platform.script = [503]
        response = await gateway.get(DETAIL, params={"tradeNo": "T"})
        assert response.status == 200
        assert response.headers["X-Neu-Attempts"] == "2"
        first, second = platform.received
        assert first["timestamp"] != second["timestamp"]
        assert first["sign"] != second["sign"]
        assert signing.verify(first, SECRET)
        assert signing.verify(second, SECRET)


async def test_a_post_that_meets_a_503_gets_it_and_is_sent_once(
    aiohttp_client: Any, aiohttp_server: Any
) -> None:
    async with scripted_gateway(aiohttp_client, aiohttp_server) as (gateway, platform):
        platform.script = [503]
        response = await gateway.post(TRADE, data=trade_form())
        assert response.status == 503
        assert "X-Neu-Attempts" not in response.headers
        assert len(platform.received) == 1


async def test_a_get_is_asked_at_most_retries_attempts_times(
    aiohttp_client: Any, aiohttp_server: Any
) -> None:
    async with scripted_gateway(
        aiohttp_client, aiohttp_server, retries={"endpoints": {DETAIL: {"attempts": 2}}}
    ) as (gateway, platform):
        platform.script = [503, 503, 503]
        response = await gateway.get(DETAIL, params={"tradeNo": "T"})
        assert response.status == 503
        assert response.headers["X-Neu-Attempts"] == "2"
        assert len(platform.received) == 2


async def test_the_breaker_opens_rests_the_platform_half_opens_and_closes(
    aiohttp_client: Any, aiohttp_server: Any
) -> None:
    clock = MutableClock()
    async with scripted_gateway(
        aiohttp_client,
        aiohttp_server,
        clock,
        retries={"attempts": 1},
        breaker={"failures": 3, "cooldown_s": 30},
    ) as (gateway, platform):
        platform.script = [503, 503, 503, 503]
        for _ in range(3):
            assert (await gateway.get(DETAIL, params={"tradeNo": "T"})).status == 503
        assert len(platform.received) == 3
        # Open: answered at once, and the platform sees nothing.
        response = await gateway.get(DETAIL, params={"tradeNo": "T"})
        body = await response.json()
        assert (response.status, body["error"]) == (503, "upstream_unavailable")
        assert int(response.headers["Retry-After"]) > 0
        assert len(platform.received) == 3
        # After the cooldown one probe goes through; it fails, so the breaker opens again.
        clock.advance(30)
        assert (await gateway.get(DETAIL, params={"tradeNo": "T"})).status == 503
        assert len(platform.received) == 4
        assert (await gateway.get(DETAIL, params={"tradeNo": "T"})).status == 503
        assert len(platform.received) == 4
        # The next probe succeeds: closed, every call goes through again.
        clock.advance(30)
        assert (await gateway.get(DETAIL, params={"tradeNo": "T"})).status == 200
        assert (await gateway.get(DETAIL, params={"tradeNo": "T"})).status == 200
        assert len(platform.received) == 6
        metrics = await (await gateway.get("/metrics")).text()
        assert 'neu_gateway_breaker_state{app="demo"} 0.0' in metrics


async def test_only_one_probe_goes_through_while_half_open(
    aiohttp_client: Any, aiohttp_server: Any
) -> None:
    clock = MutableClock()
    async with scripted_gateway(
        aiohttp_client,
        aiohttp_server,
        clock,
        retries={"attempts": 1},
        breaker={"failures": 1, "cooldown_s": 5},
    ) as (gateway, platform):
        platform.script = [503]
        await gateway.get(DETAIL, params={"tradeNo": "T"})
        clock.advance(5)
        answers = await asyncio.gather(
            *(gateway.get(DETAIL, params={"tradeNo": "T"}) for _ in range(10))
        )
        assert sorted(a.status for a in answers) == [200] + [503] * 9
        assert len(platform.received) == 2, "the first failure, and the one probe"
        for answer in answers:
            if answer.status == 503:
                assert (await answer.json())["error"] == "upstream_unavailable"


def trade_form(**extra: str) -> dict[str, str]:
    return {
        "outTradeNo": f"o-{time.time_ns()}",
        "amount": "100",
        "currency": "USD",
        "openId": "o1",
        "notifyUrl": "https://shop.example/notify",
        **extra,
    }


@pytest.mark.parametrize("validation", ["doc", "off"])
async def test_validation_off_lets_a_value_the_doc_does_not_list_through(
    aiohttp_client: Any, aiohttp_server: Any, validation: str
) -> None:
    async with scripted_gateway(aiohttp_client, aiohttp_server, validation=validation) as (
        gateway,
        platform,
    ):
        response = await gateway.post(TRADE, data=trade_form(currency="EUR"))
        if validation == "off":
            assert response.status == 200
            assert platform.received[0]["currency"] == "EUR"
            return
        body = await response.json()
        assert (response.status, body["error"]) == (400, "validation_failed")
        assert "apps.demo.validation: off" in body["responseHeader"]["msg"]
        assert platform.received == []


async def test_validation_off_still_requires_the_required(
    aiohttp_client: Any, aiohttp_server: Any
) -> None:
    form = trade_form()
    del form["outTradeNo"]
    async with scripted_gateway(aiohttp_client, aiohttp_server, validation="off") as (
        gateway,
        platform,
    ):
        response = await gateway.post(TRADE, data=form)
        body = await response.json()
        assert (response.status, body["error"]) == (400, "validation_failed")
        assert "outTradeNo: required" in body["responseHeader"]["msg"]
        assert platform.received == []


async def test_a_post_whose_connection_failed_before_sending_is_tried_again(
    make_gateway: Any,
) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    gateway = await make_gateway(upstream=f"http://127.0.0.1:{port}")
    response = await gateway.post(TRADE, data=trade_form())
    assert (response.status, (await response.json())["error"]) == (502, "upstream_unreachable")
    metrics = await (await gateway.get("/metrics")).text()
    line = (
        'neu_gateway_upstream_requests_total{app="demo",'
        f'platform_status="none",route="{TRADE}",status="unreachable"}} 3.0'
    )
    assert line in metrics
