"""A refused sign is an incident: a gateway whose secret for an app is not the platform's,
against the sandbox on loopback (which checks signs as the platform does). The caller's answer
says so in a header, the app's counter counts it, and a warning names the app once a minute."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from gateway.config.load import from_mapping
from gateway.config.model import Config
from gateway.http.keys import METRICS
from gateway.runtime.app import create_app
from gateway.runtime.reload import apply_config
from gateway.sandbox.server import create_sandbox_app
from tests.conftest import guarded
from tests.support.clock import MutableClock
from tests.support.paths import DETAIL, TOKEN, USER_INFO
from tests.support.platform_double import APPID

Client = TestClient[Any, Any]
PLATFORMS_SECRET = "the-platforms-secret"
RETIRED_SECRET = "a-retired-secret"
REJECTED = "X-Neu-Sign-Rejected"


def config_for(upstream: str, secret: str) -> Config:
    return from_mapping(
        {
            "apps": {"demo": {"appid": APPID, "secret_env": "S", "upstream": upstream}},
            "timeouts": {"connect_s": 2, "total_s": 5},
        },
        {"S": secret},
    )


@pytest.fixture
async def platform(aiohttp_server: Any) -> str:
    """The sandbox, as the platform, with the app's current secret."""
    server = await aiohttp_server(create_sandbox_app({APPID: PLATFORMS_SECRET}))
    return str(server.make_url("")).rstrip("/")


@pytest.fixture
def clock() -> MutableClock:
    return MutableClock()


@pytest.fixture
def make(aiohttp_client: Any, platform: str, clock: MutableClock) -> Callable[..., Any]:
    async def start(secret: str) -> Client:
        app = create_app(config_for(platform, secret), clock=clock)
        client: Client = await aiohttp_client(guarded(app))
        return client

    return start


def rejections(gateway: Client) -> float | None:
    return gateway.app[METRICS].registry.get_sample_value(
        "neu_gateway_sign_rejections_total", {"app": "demo"}
    )


async def detail(gateway: Client) -> tuple[aiohttp.ClientResponse, bytes]:
    response = await gateway.get(DETAIL, params={"tradeNo": "no-such-trade"})
    return response, await response.read()


async def test_a_refused_sign_is_relayed_as_it_came_and_marked(
    make: Any, platform: str, caplog: pytest.LogCaptureFixture
) -> None:
    gateway = await make(RETIRED_SECRET)
    assert rejections(gateway) == 0  # there from the start, for an alert to see
    with caplog.at_level(logging.WARNING, "neu_gateway"):
        response, body = await detail(gateway)
    assert response.status == 200
    assert response.headers[REJECTED] == "1"
    assert body.startswith(b'{"responseHeader": {"status": 401, "msg": "sign error')
    assert rejections(gateway) == 1
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warning == (
        f"app demo (appid {APPID}, upstream {platform}): the platform refused the gateway's "
        "sign (1 refusal since this process started): the secret for apps.demo is wrong or "
        "was rotated on the platform; every call of this app fails until it holds the "
        "platform's secret"
    )
    assert RETIRED_SECRET not in caplog.text


async def test_an_accepted_sign_is_not_marked_or_counted(make: Any) -> None:
    gateway = await make(PLATFORMS_SECRET)
    response, body = await detail(gateway)
    assert b'"status": 404' in body
    assert REJECTED not in response.headers
    assert rejections(gateway) == 0


async def test_the_warning_comes_once_a_minute_with_the_count_since_the_last(
    make: Any, clock: MutableClock, caplog: pytest.LogCaptureFixture
) -> None:
    gateway = await make(RETIRED_SECRET)

    def warnings() -> list[str]:
        # (The clock moved forward also makes the gateway warn that it is off the platform's.)
        return [r.getMessage() for r in caplog.records if "refused the gateway's sign" in r.msg]

    with caplog.at_level(logging.WARNING, "neu_gateway"):
        for _ in range(5):
            await detail(gateway)
        assert len(warnings()) == 1
        clock.advance(59)
        await detail(gateway)
        assert len(warnings()) == 1
        clock.advance(2)
        await detail(gateway)
        assert len(warnings()) == 2
    # The four after the first warning, and the two since.
    assert "(6 refusals in the last 61 s)" in warnings()[1]
    assert rejections(gateway) == 7


async def test_the_gateways_own_code_exchange_counts_and_its_callers_are_told(
    make: Any, platform: str
) -> None:
    gateway = await make(RETIRED_SECRET)
    async with (
        aiohttp.ClientSession() as session,
        session.post(platform + "/sandbox/login", data={"user": "alice"}) as login,
    ):
        code = (await login.json())["response"]["code"]
    form = {"code": code, "grantType": "authorization_code", "scope": "user.info"}
    # Concurrent exchanges of one code share the token cache's one call to the platform.
    responses = await asyncio.gather(*(gateway.post(TOKEN, data=form) for _ in range(3)))
    assert sorted(r.headers["X-Neu-Cache"] for r in responses) == ["miss", "shared", "shared"]
    assert [r.headers.get(REJECTED) for r in responses] == ["1", "1", "1"]
    assert rejections(gateway) == 1


async def test_a_refused_sign_keeps_the_users_cached_token(make: Any, platform: str) -> None:
    """user/info by openId, refused for its sign, does not evict the token: once the secret is
    right again the user is still logged in."""
    gateway = await make(PLATFORMS_SECRET)
    async with (
        aiohttp.ClientSession() as session,
        session.post(platform + "/sandbox/login", data={"user": "alice"}) as login,
    ):
        code = (await login.json())["response"]["code"]
    exchanged = await gateway.post(
        TOKEN, data={"code": code, "grantType": "authorization_code", "scope": "user.info"}
    )
    token = (await exchanged.json())["response"]["accessToken"]
    open_id = (await (await gateway.get(USER_INFO, params={"accessToken": token})).json())[
        "response"
    ]["openId"]

    apply_config(gateway.app, config_for(platform, RETIRED_SECRET))
    refused = await gateway.get(USER_INFO, params={"openId": open_id})
    assert (refused.headers[REJECTED], refused.headers["X-Neu-Cache"]) == ("1", "hit")

    apply_config(gateway.app, config_for(platform, PLATFORMS_SECRET))
    again = await gateway.get(USER_INFO, params={"openId": open_id})
    assert (await again.json())["responseHeader"]["status"] == 200
    assert REJECTED not in again.headers


# JSON nested deeper than Python's json can parse (it recurses once a level).
NESTED = b"[" * 100_000 + b"]" * 100_000


@pytest.mark.parametrize(
    ("status", "body"),
    [
        pytest.param(401, NESTED, id="HTTP 401, a body nested too deeply"),
        pytest.param(
            200,
            b'{"responseHeader": {"status": 401, "msg": "sign error"}, "x": ' + NESTED + b"}",
            id="an envelope's 401 nested too deeply",
        ),
    ],
)
async def test_a_refusal_too_deeply_nested_to_parse_is_relayed_not_a_500(
    aiohttp_server: Any, aiohttp_client: Any, clock: MutableClock, status: int, body: bytes
) -> None:
    async def answer(request: aiohttp.web.Request) -> aiohttp.web.Response:
        return aiohttp.web.Response(status=status, body=body, content_type="application/json")

    platform = aiohttp.web.Application()
    platform.router.add_route("*", "/{path:.*}", answer)
    server = await aiohttp_server(platform)
    app = create_app(
        config_for(str(server.make_url("")).rstrip("/"), PLATFORMS_SECRET), clock=clock
    )
    gateway: Client = await aiohttp_client(guarded(app))
    response, relayed = await detail(gateway)
    assert (response.status, relayed) == (status, body)
    # Not a sign refusal the gateway can tell: no envelope it can read.
    assert REJECTED not in response.headers
