"""What the sandbox's HTTP modules share: a control's parameters from query, form or JSON,
the app a control names, its answer, and what an embedding process may ask of a sandbox."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import FormData, web
from aiohttp.test_utils import TestClient

from gateway.core.verification import Rejected
from gateway.sandbox.controls import (
    WORLD,
    appid_of,
    control_params,
    ok,
    sandbox_appids,
    set_secret,
)
from gateway.sandbox.server import create_sandbox_app
from gateway.sandbox.world import Settings, World
from tests.support.clock import MutableClock
from tests.support.platform_double import APPID, SECRET, reference_sign
from tests.support.receiver import CallbackReceiver

Client = TestClient[Any, Any]


async def echo_params(request: web.Request) -> web.Response:
    try:
        return ok(await control_params(request))
    except Rejected as refused:
        return web.json_response({"status": refused.status, "msg": refused.msg}, status=400)


@pytest.fixture
async def client(aiohttp_client: Any) -> Client:
    app = web.Application()
    app.router.add_post("/control", echo_params)
    echo: Client = await aiohttp_client(app)
    return echo


async def params_of(client: Client, **request: Any) -> Any:
    response = await client.post("/control", **request)
    return await response.json()


async def test_query_and_form_fields_together(client: Client) -> None:
    body = await params_of(client, params={"a": "1", "b": "query"}, data={"b": "form", "c": ""})
    assert body["response"] == {"a": "1", "b": "form", "c": ""}
    assert body["responseHeader"] == {"status": 200, "msg": "OK"}


async def test_json_values_become_text_as_curl_users_write_them(client: Client) -> None:
    body = await params_of(
        client, json={"flag": True, "off": False, "none": None, "n": 5, "x": 1.5, "s": "t"}
    )
    assert body["response"] == {
        "flag": "true",
        "off": "false",
        "none": "",
        "n": "5",
        "x": "1.5",
        "s": "t",
    }


async def test_a_file_part_is_no_control_value(client: Client) -> None:
    form = FormData()
    form.add_field("name", "Alice")
    form.add_field("secret", b"file bytes", filename="secret.txt")
    assert (await params_of(client, data=form))["response"] == {"name": "Alice"}


@pytest.mark.parametrize(
    ("body", "msg"),
    [
        pytest.param(b"{not json", "the JSON body cannot be parsed", id="malformed"),
        pytest.param(b'["a"]', "the JSON body must be an object", id="a list"),
    ],
)
async def test_a_json_body_that_is_no_object_is_refused(
    client: Client, body: bytes, msg: str
) -> None:
    answer = await params_of(client, data=body, headers={"Content-Type": "application/json"})
    assert answer == {"status": 400, "msg": msg}


def test_the_app_a_control_names_or_the_only_one() -> None:
    both = World({APPID: SECRET, "other": "s"}, Settings(), MutableClock())
    only = World({APPID: SECRET}, Settings(), MutableClock())
    assert appid_of(both, {"appid": "other"}) == "other"
    assert appid_of(only, {}) == APPID
    with pytest.raises(Rejected) as refused:
        appid_of(both, {"appid": ""})
    assert (refused.value.status, refused.value.msg) == (
        400,
        "appid is required: several apps are registered",
    )


async def test_set_secret_rotates_the_platforms_secret_and_its_callbacks(
    aiohttp_client: Any, receiver: CallbackReceiver
) -> None:
    app = create_sandbox_app({APPID: SECRET, "other": "s"}, Settings(notify_backoff_s=0.01))
    await aiohttp_client(app)
    assert sandbox_appids(app) == frozenset({APPID, "other"})
    set_secret(app, APPID, "rotated", keep_previous_s=30)
    world = app[WORLD]
    assert (world.secrets[APPID], world.previous_secret(APPID)) == ("rotated", SECRET)
    openid = world.login(APPID, "payer")["openId"]
    trade = {
        "outTradeNo": "o-1",
        "amount": "1",
        "currency": "USD",
        "openId": openid,
        "notifyUrl": receiver.url,
    }
    world.pay(world.create_trade(APPID, trade)["tradeNo"], "succeeded")
    [callback] = await receiver.wait_for(1)
    assert callback["sign"] == reference_sign(callback, "rotated")
