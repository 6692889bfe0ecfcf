"""The platform's OpenAPI as the sandbox answers it: verified as the platform verifies
(appid, timestamp, sign), validated by the doc's rules, each endpoint's action taken; HTTP 200
with the outcome in the envelope. Called with requests signed by the tests' own signing code."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp import FormData
from aiohttp.test_utils import TestClient

from gateway.core import jwt
from gateway.core.endpoints import (
    ACCESS_TOKEN,
    ENDPOINTS,
    SEND_ACTIVITY,
    SEND_NOTIFY,
    TRADE,
    TRADE_CLOSE,
    TRADE_DETAIL,
    USER_INFO,
)
from gateway.core.verification import Rejected
from gateway.sandbox.openapi import ACTIONS, ECHO_PATH, signed_by
from gateway.sandbox.server import create_sandbox_app
from gateway.sandbox.world import Settings, World
from tests.sandbox.conftest import header
from tests.support.clock import MutableClock
from tests.support.platform_double import APPID, SECRET, reference_sign
from tests.support.receiver import CallbackReceiver
from tests.support.sandbox_client import SECRETS, call, login, signed

Client = TestClient[Any, Any]
DETAIL = TRADE_DETAIL.path

Mangle = Callable[[dict[str, str]], dict[str, str]]


def without(key: str) -> Mangle:
    return lambda params: {k: v for k, v in params.items() if k != key}


def test_every_documented_endpoint_has_an_action() -> None:
    assert set(ACTIONS) == set(ENDPOINTS)


# Verification, as the platform does it


@pytest.mark.parametrize(
    ("mangle", "status", "message"),
    [
        pytest.param(
            lambda p: {**p, "appid": "nope"}, 401, "unknown appid 'nope'", id="unknown appid"
        ),
        pytest.param(without("appid"), 400, "appid is required", id="no appid"),
        pytest.param(without("timestamp"), 400, "timestamp is required", id="no timestamp"),
        pytest.param(
            lambda p: {**p, "timestamp": "soon"},
            400,
            "whole number of milliseconds",
            id="text timestamp",
        ),
        pytest.param(
            lambda p: {**p, "timestamp": str(int(p["timestamp"]) // 1000)},
            401,
            "behind the platform's clock",
            id="seconds, not milliseconds",
        ),
        pytest.param(
            lambda p: {**p, "timestamp": str(int(p["timestamp"]) + 301_000)},
            401,
            "ahead of the platform's clock",
            id="more than 5 minutes ahead",
        ),
        pytest.param(without("sign"), 401, "sign is required", id="no sign"),
        pytest.param(lambda p: {**p, "sign": "0" * 64}, 401, "sign error", id="wrong sign"),
        pytest.param(
            lambda p: {**p, "tradeNo": "changed"},
            401,
            "sign error",
            id="param changed after signing",
        ),
        pytest.param(
            lambda p: {**p, "secret": SECRET},
            400,
            "'secret' parameter was sent",
            id="secret on the wire",
        ),
    ],
)
async def test_verification_refusals(
    sandbox: Client, mangle: Mangle, status: int, message: str
) -> None:
    params = mangle(signed({"tradeNo": "T"}))
    response = await sandbox.get(DETAIL, params=params)
    assert response.status == 200
    got_status, got_message = header(await response.json())
    assert got_status == status
    assert message in got_message
    assert SECRET not in got_message


async def test_a_timestamp_within_five_minutes_is_accepted(
    sandbox: Client, clock: MutableClock
) -> None:
    body = await call(sandbox, "GET", DETAIL, {"tradeNo": "T"}, now_ms=clock.now - 299_000)
    assert header(body) == (404, "trade 'T' not found")


async def test_a_sign_error_explains_what_was_signed(sandbox: Client) -> None:
    params = {**signed({"tradeNo": "T1"}), "sign": "0" * 64}
    body = await (await sandbox.get(DETAIL, params=params)).json()
    assert header(body)[1].endswith(
        f"the platform signed: appid={APPID}secret=******timestamp={params['timestamp']}tradeNo=T1"
    )


async def test_without_explain_a_sign_error_says_only_that(aiohttp_client: Any) -> None:
    sandbox = await aiohttp_client(create_sandbox_app(SECRETS, Settings(explain=False)))
    params = {**signed({"tradeNo": "T1"}), "sign": "0" * 64}
    body = await (await sandbox.get(DETAIL, params=params)).json()
    assert header(body) == (401, "sign error: the sign does not match the parameters")


def test_a_secret_rotated_out_signs_while_it_is_still_accepted() -> None:
    clock = MutableClock()
    world = World({APPID: SECRET}, Settings(), clock)
    world.rotate(APPID, "new-secret", keep_previous_s=60)
    fields = {"tradeNo": "T", "appid": APPID, "timestamp": str(clock.now)}
    old = {**fields, "sign": reference_sign(fields, SECRET)}
    assert signed_by(world, old) == APPID
    assert signed_by(world, {**fields, "sign": reference_sign(fields, "new-secret")}) == APPID
    clock.advance(60)
    with pytest.raises(Rejected) as refused:
        signed_by(world, {**old, "timestamp": str(clock.now)})
    assert refused.value.status == 401
    # A refusal other than the sign's is the current secret's, whatever the old one says.
    with pytest.raises(Rejected) as unsigned:
        signed_by(world, {**fields, "timestamp": "soon"})
    assert unsigned.value.status == 400


async def test_a_documented_endpoint_takes_its_method_only(sandbox: Client) -> None:
    assert header(await call(sandbox, "POST", DETAIL, {"tradeNo": "T"})) == (
        405,
        f"{DETAIL} takes GET, not POST",
    )


async def test_an_undocumented_endpoint_is_404(sandbox: Client) -> None:
    assert header(await call(sandbox, "GET", "/neuopenapi/nothing/here")) == (
        404,
        "no such OpenAPI endpoint: /neuopenapi/nothing/here",
    )


async def test_a_body_the_platform_cannot_read_is_refused(sandbox: Client) -> None:
    json_body = await sandbox.post(TRADE_CLOSE.path, json=signed({"tradeNo": "T"}))
    assert header(await json_body.json()) == (
        415,
        "the platform takes application/x-www-form-urlencoded or multipart/form-data",
    )
    broken = await sandbox.post(
        TRADE_CLOSE.path,
        data=b"a=%zz",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    status, message = header(await broken.json())
    assert status == 400
    assert "form body" in message


async def test_the_echo_verifies_and_reports_files(sandbox: Client) -> None:
    form = FormData()
    for key, value in signed({"title": "t"}).items():
        form.add_field(key, value)
    form.add_field("fileData", b"abc", filename="a.txt")
    body = await (await sandbox.post(ECHO_PATH, data=form)).json()
    assert header(body) == (200, "OK")
    assert body["response"]["params"]["title"] == "t"
    assert "sign" not in body["response"]["params"]
    assert body["response"]["files"] == [
        {
            "name": "fileData",
            "filename": "a.txt",
            "size": 3,
            "sha256": hashlib.sha256(b"abc").hexdigest(),
        }
    ]


async def test_the_doc_rules_refusal_names_every_problem(sandbox: Client) -> None:
    """The messages are core.endpoints.validate's (tested there); here: they reach the caller."""
    body = await call(sandbox, "POST", SEND_NOTIFY.path, {"navigateType": "2"})
    status, message = header(body)
    assert status == 400
    assert message.startswith("invalid parameters: notifyType: required; openIds: required; ")


# Each endpoint reaches its action


async def test_a_user_logs_in_pays_and_hears_of_it(
    sandbox: Client, receiver: CallbackReceiver
) -> None:
    opened = await login(sandbox, "alice")
    exchange = {"code": opened["code"], "grantType": "authorization_code", "scope": "user.info"}
    token = (await call(sandbox, "POST", ACCESS_TOKEN.path, exchange))["response"]
    assert (token["expire"], token["tokenType"]) == (2, "bearer")
    claims = jwt.unverified_claims(token["accessToken"])
    assert claims is not None
    assert claims["openId"] == opened["openId"]
    again = await call(sandbox, "POST", ACCESS_TOKEN.path, exchange)
    assert header(again)[1] == "invalid code: it was already exchanged (a code is single-use)"
    info = await call(sandbox, "GET", USER_INFO.path, {"accessToken": token["accessToken"]})
    assert info["response"]["openId"] == opened["openId"]

    trade = {
        "outTradeNo": "o-1",
        "amount": "100",
        "currency": "USD",
        "openId": opened["openId"],
        "notifyUrl": receiver.url,
    }
    created = (await call(sandbox, "POST", TRADE.path, trade))["response"]
    assert created["outTradeNo"] == "o-1"
    detail = await call(sandbox, "GET", DETAIL, {"tradeNo": created["tradeNo"]})
    assert detail["response"]["transactionStatus"] == 1
    closed = await call(sandbox, "POST", TRADE_CLOSE.path, {"tradeNo": created["tradeNo"]})
    assert (header(closed), closed["response"]) == ((200, "OK"), True)
    assert (await receiver.wait_for(1))[0]["transactionStatus"] == "6"

    notify = {
        "notifyType": "1",
        "openIds": opened["openId"],
        "title": "Closed",
        "text": "t",
        "navigateType": "1",
        "language": "en_US",
    }
    assert (await call(sandbox, "POST", SEND_NOTIFY.path, notify))["response"] is True
    card = {
        "activityId": "a",
        "openIds": opened["openId"],
        "color": "FFFFFF",
        "templateId": "1",
        "title": "Card",
        "text": "t",
        "iconUrl": "https://x.example/i.png",
        "status": "1",
        "validityTime": "60",
        "language": "en_US",
    }
    assert (await call(sandbox, "POST", SEND_ACTIVITY.path, card))["response"] is True
    inbox = (await (await sandbox.get(f"/sandbox/inbox/{opened['openId']}")).json())["response"]
    assert (
        [n["title"] for n in inbox["notifications"]],
        [a["title"] for a in inbox["activities"]],
    ) == (
        ["Closed"],
        ["Card"],
    )


async def test_a_trade_expires_on_time_without_being_asked(
    aiohttp_client: Any, receiver: CallbackReceiver
) -> None:
    sandbox = await aiohttp_client(create_sandbox_app(SECRETS, Settings(notify_backoff_s=0.01)))
    open_id = (await login(sandbox, "payer"))["openId"]
    trade = {
        "outTradeNo": "o-1",
        "amount": "100",
        "currency": "USD",
        "openId": open_id,
        "notifyUrl": receiver.url,
        "timeExpire": str(time.time_ns() // 1_000_000 + 300),
    }
    trade_no = (await call(sandbox, "POST", TRADE.path, trade))["response"]["tradeNo"]
    [notification] = await receiver.wait_for(1)
    assert (notification["tradeNo"], notification["transactionStatus"]) == (trade_no, "4")


async def test_every_call_is_logged_with_its_verdict(sandbox: Client) -> None:
    await call(sandbox, "GET", DETAIL, {"tradeNo": "T"})
    await sandbox.get(DETAIL, params={**signed({"tradeNo": "T"}), "sign": "0" * 64})
    entries = (await (await sandbox.get("/sandbox/requests")).json())["response"]["requests"]
    assert [(e["endpoint"], e["verdict"], e["status"]) for e in entries] == [
        (DETAIL, "refused", 401),
        (DETAIL, "refused", 404),
    ]
    assert entries[1]["params"]["tradeNo"] == "T"
