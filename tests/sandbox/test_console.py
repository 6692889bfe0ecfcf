"""The /sandbox/ controls curl and tests drive: a user logs in, the payer pays, the console
rotates a secret; a trade's and an openId's view; reset and stats."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from gateway.core.endpoints import SEND_NOTIFY, TRADE, TRADE_DETAIL
from gateway.sandbox.server import create_sandbox_app
from gateway.sandbox.world import DEMO_USER
from tests.sandbox.conftest import header
from tests.support.clock import MutableClock
from tests.support.platform_double import APPID, SECRET, reference_sign
from tests.support.receiver import CallbackReceiver
from tests.support.sandbox_client import OTHER_APPID, call, login, signed

Client = TestClient[Any, Any]
DETAIL = TRADE_DETAIL.path


async def answer(sandbox: Client, method: str, path: str, **form: str) -> tuple[int, Any]:
    """The HTTP status (the same as the envelope's) and the envelope."""
    response = await sandbox.request(method, path, data=form or None)
    body = await response.json()
    assert body["responseHeader"]["status"] == response.status
    return response.status, body


async def new_trade(sandbox: Client, notify_url: str) -> str:
    params = {
        "outTradeNo": "order-1",
        "amount": "100",
        "currency": "USD",
        "openId": (await login(sandbox, "payer"))["openId"],
        "notifyUrl": notify_url,
    }
    trade_no: str = (await call(sandbox, "POST", TRADE.path, params))["response"]["tradeNo"]
    return trade_no


# Login


async def test_a_login_gives_a_code_and_the_open_id(sandbox: Client, clock: MutableClock) -> None:
    status, body = await answer(sandbox, "POST", "/sandbox/login", user="alice", appid=APPID)
    assert status == 200
    assert set(body["response"]) == {"code", "expiresIn", "openId"}


async def test_with_one_app_a_login_needs_no_appid(aiohttp_client: Any) -> None:
    sandbox = await aiohttp_client(create_sandbox_app({APPID: SECRET}))
    assert (await answer(sandbox, "POST", "/sandbox/login", user="alice"))[0] == 200


@pytest.mark.parametrize(
    ("form", "status"),
    [
        pytest.param({"user": "a", "appid": "nope"}, 404, id="unknown app"),
        pytest.param({"user": " ", "appid": APPID}, 400, id="no user"),
        pytest.param({"user": "a"}, 400, id="no appid with two apps"),
    ],
)
async def test_a_login_refused(sandbox: Client, form: dict[str, str], status: int) -> None:
    assert (await answer(sandbox, "POST", "/sandbox/login", **form))[0] == status


# Paying


async def test_a_payment_notifies_the_notify_url_signed(
    sandbox: Client, receiver: CallbackReceiver
) -> None:
    trade_no = await new_trade(sandbox, receiver.url)
    status, body = await answer(
        sandbox, "POST", f"/sandbox/trades/{trade_no}/pay", result="succeeded"
    )
    assert (status, body["response"]["transactionStatus"]) == (200, 2)
    [notification] = await receiver.wait_for(1)
    assert (notification["tradeNo"], notification["transactionStatus"]) == (trade_no, "2")
    assert notification["sign"] == reference_sign(notification, SECRET)
    detail = (await call(sandbox, "GET", DETAIL, {"tradeNo": trade_no}))["response"]
    assert detail["transactionStatus"] == 2


async def test_a_failed_payment_names_its_reason(
    sandbox: Client, receiver: CallbackReceiver
) -> None:
    trade_no = await new_trade(sandbox, receiver.url)
    path = f"/sandbox/trades/{trade_no}/pay"
    status, body = await answer(sandbox, "POST", path, result="failed", failReasonType="10")
    assert (status, body["response"]["failReasonType"]) == (200, 10)
    assert (await receiver.wait_for(1))[0]["transactionStatus"] == "3"
    assert (await answer(sandbox, "POST", path, result="succeeded"))[0] == 409


@pytest.mark.parametrize(
    ("form", "status"),
    [
        pytest.param({"result": "maybe"}, 400, id="unknown result"),
        pytest.param({"result": "failed", "failReasonType": "99"}, 400, id="not in the table"),
    ],
)
async def test_a_payment_refused(
    sandbox: Client, receiver: CallbackReceiver, form: dict[str, str], status: int
) -> None:
    trade_no = await new_trade(sandbox, receiver.url)
    path = f"/sandbox/trades/{trade_no}/pay"
    assert (await answer(sandbox, "POST", path, **form))[0] == status
    assert (await answer(sandbox, "POST", "/sandbox/trades/nope/pay", result="succeeded"))[0] == 404


async def test_a_reason_that_is_no_number_is_refused(
    sandbox: Client, receiver: CallbackReceiver
) -> None:
    trade_no = await new_trade(sandbox, receiver.url)
    path = f"/sandbox/trades/{trade_no}/pay"
    status, body = await answer(sandbox, "POST", path, result="failed", failReasonType="ten")
    assert (status, header(body)[1]) == (
        400,
        "failReasonType must be a number from the doc's table",
    )


# Views


async def test_a_trades_view_has_its_callback_attempts(
    sandbox: Client, receiver: CallbackReceiver
) -> None:
    trade_no = await new_trade(sandbox, receiver.url)
    await answer(sandbox, "POST", f"/sandbox/trades/{trade_no}/pay", result="succeeded")
    await receiver.wait_for(1)
    status, body = await answer(sandbox, "GET", f"/sandbox/trades/{trade_no}")
    view = body["response"]
    assert (status, view["notifyUrl"], view["detail"]["tradeNo"]) == (200, receiver.url, trade_no)
    assert [n["attempt"] for n in view["notifications"]] == [1]
    assert (await answer(sandbox, "GET", "/sandbox/trades/nope"))[0] == 404


async def test_an_inbox_has_what_one_open_id_was_sent(sandbox: Client) -> None:
    alice = (await login(sandbox, "alice"))["openId"]
    notify = {
        "notifyType": "1",
        "openIds": alice,
        "title": "Paid",
        "text": "Thanks",
        "navigateType": "1",
        "language": "en_US",
    }
    await call(sandbox, "POST", SEND_NOTIFY.path, notify)
    status, body = await answer(sandbox, "GET", f"/sandbox/inbox/{alice}")
    assert status == 200
    assert [n["title"] for n in body["response"]["notifications"]] == ["Paid"]
    assert (await answer(sandbox, "GET", "/sandbox/inbox/nobody"))[1]["response"] == {
        "openId": "nobody",
        "notifications": [],
        "activities": [],
    }


# Secret rotation


async def signed_with(sandbox: Client, secret: str, now_ms: int) -> tuple[int, str]:
    fields = {"tradeNo": "none", "appid": APPID, "timestamp": str(now_ms)}
    fields["sign"] = reference_sign(fields, secret)
    response = await sandbox.get(DETAIL, params=fields)
    return header(await response.json())


async def rotate(sandbox: Client, **form: str) -> tuple[int, Any]:
    status, body = await answer(sandbox, "POST", f"/sandbox/apps/{APPID}/secret", **form)
    return status, body["response"]


async def test_a_rotated_secret_is_accepted_beside_the_old_one_for_a_while(
    sandbox: Client, clock: MutableClock
) -> None:
    assert await rotate(sandbox, secret="new-secret", keep_previous_s="60") == (200, True)
    # An unknown trade, so the sign was accepted: a bad sign would be 401.
    assert (await signed_with(sandbox, "new-secret", clock.now))[0] == 404
    assert (await signed_with(sandbox, SECRET, clock.now))[0] == 404
    clock.advance(61)
    status, message = await signed_with(sandbox, SECRET, clock.now)
    assert (status, message.split(";")[0]) == (
        401,
        "sign error: the sign does not match the parameters",
    )
    assert (await signed_with(sandbox, "new-secret", clock.now))[0] == 404


async def test_the_old_secret_is_kept_300_s_by_default(
    sandbox: Client, clock: MutableClock
) -> None:
    await rotate(sandbox, secret="new-secret")
    clock.advance(299)
    assert (await signed_with(sandbox, SECRET, clock.now))[0] == 404
    clock.advance(1)
    assert (await signed_with(sandbox, SECRET, clock.now))[0] == 401


async def test_the_same_secret_again_with_no_grace_retires_the_old_one(
    sandbox: Client, clock: MutableClock
) -> None:
    await rotate(sandbox, secret="new-secret")
    assert (await signed_with(sandbox, SECRET, clock.now))[0] == 404
    await rotate(sandbox, secret="new-secret", keep_previous_s="0")
    assert (await signed_with(sandbox, SECRET, clock.now))[0] == 401


@pytest.mark.parametrize(
    ("form", "msg"),
    [
        pytest.param({}, "secret is required", id="no secret"),
        pytest.param(
            {"secret": "x", "keep_previous_s": "nan"},
            "keep_previous_s must be a number of seconds from 0 to 86400",
            id="nan",
        ),
        pytest.param(
            {"secret": "x", "keep_previous_s": "-1"},
            "keep_previous_s must be a number of seconds from 0 to 86400",
            id="negative",
        ),
        pytest.param(
            {"secret": "x", "keep_previous_s": "86401"},
            "keep_previous_s must be a number of seconds from 0 to 86400",
            id="over a day",
        ),
        pytest.param(
            {"secret": "x", "keep_previous_s": "soon"},
            "keep_previous_s must be a number of seconds from 0 to 86400",
            id="not a number",
        ),
    ],
)
async def test_a_bad_rotation_is_refused(sandbox: Client, form: dict[str, str], msg: str) -> None:
    status, body = await answer(sandbox, "POST", f"/sandbox/apps/{APPID}/secret", **form)
    assert (status, header(body)[1]) == (400, msg)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"json": {"secret": {"x": 1}}}, id="an object"),
        pytest.param({"json": {"secret": ["a"]}}, id="a list"),
        pytest.param({"data": {"secret": "line\nbreak"}}, id="a control character"),
    ],
)
async def test_a_secret_that_is_not_plain_text_is_refused(
    sandbox: Client, body: dict[str, Any]
) -> None:
    response = await sandbox.post(f"/sandbox/apps/{APPID}/secret", **body)
    assert header(await response.json()) == (400, "secret must be plain text")


async def test_an_unknown_app_has_no_secret_to_rotate(sandbox: Client) -> None:
    status, body = await answer(sandbox, "POST", "/sandbox/apps/nope/secret", secret="x")
    assert (status, header(body)[1]) == (404, "unknown appid 'nope'")


# Reset and stats


async def test_reset_clears_everything_but_the_apps(
    sandbox: Client, receiver: CallbackReceiver
) -> None:
    trade_no = await new_trade(sandbox, receiver.url)
    await sandbox.post("/sandbox/faults", data={"path": DETAIL, "status": "500"})
    assert await answer(sandbox, "POST", "/sandbox/reset") == (
        200,
        {"responseHeader": {"status": 200, "msg": "OK"}, "response": True},
    )
    assert header(await call(sandbox, "GET", DETAIL, {"tradeNo": trade_no}))[0] == 404
    stats = (await answer(sandbox, "GET", "/sandbox/stats"))[1]["response"]
    assert stats == {"calls": {DETAIL: 1}, "hanging": 0}
    # A fresh world: the demo user alone (see test_world_facade.py).
    users = (await answer(sandbox, "GET", "/sandbox/users"))[1]["response"]["users"]
    assert [(user["user"], user["loggedIn"]) for user in users] == [(DEMO_USER.phone, [])]
    assert header(await call(sandbox, "GET", DETAIL, {}, appid=OTHER_APPID))[0] == 400


async def test_stats_count_calls_per_path_refused_ones_too(sandbox: Client) -> None:
    for _ in range(3):
        await call(sandbox, "GET", DETAIL, {"tradeNo": "T"})
    await sandbox.get(DETAIL, params={**signed({"tradeNo": "T"}), "sign": "0" * 64})
    stats = (await answer(sandbox, "GET", "/sandbox/stats"))[1]["response"]
    assert stats == {"calls": {DETAIL: 4}, "hanging": 0}
