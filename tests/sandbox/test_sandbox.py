"""The sandbox platform, called directly with requests signed by the tests' own signing code."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from gateway.core import jwt
from gateway.sandbox.server import NOTIFIER, create_sandbox_app
from gateway.sandbox.world import Settings
from tests.support.clock import MutableClock
from tests.support.platform_double import APPID, SECRET, reference_sign
from tests.support.sandbox_client import OTHER_APPID, SECRETS, call, login, signed

Client = TestClient[Any, Any]
TOKEN = "/neuopenapi/oauth/mini/accessToken"
USER_INFO = "/neuopenapi/oauth/mini/user/info"
TRADE = "/neuopenapi/pay/transactions/trade"
DETAIL = "/neuopenapi/pay/transactions/tradedetail"
CLOSE = "/neuopenapi/pay/transactions/tradeclose"
NOTIFY = "/neuopenapi/notify/sendNotify"
ACTIVITY = "/neuopenapi/activity/sendActivity"


@pytest.fixture
def clock() -> MutableClock:
    return MutableClock()


@pytest.fixture
async def sandbox(aiohttp_client: Any, clock: MutableClock) -> Client:
    settings = Settings(token_expire_s=2, notify_attempts=3, notify_backoff_s=0.01)
    client: Client = await aiohttp_client(create_sandbox_app(SECRETS, settings, clock))
    return client


def header(body: dict[str, Any]) -> tuple[int, str]:
    return body["responseHeader"]["status"], body["responseHeader"]["msg"]


async def token_for(sandbox: Client, user: str = "alice", scope: str = "user.info") -> str:
    code = (await login(sandbox, user))["code"]
    body = await call(
        sandbox, "POST", TOKEN, {"code": code, "grantType": "authorization_code", "scope": scope}
    )
    assert header(body) == (200, "OK")
    token: str = body["response"]["accessToken"]
    return token


# Verification, as the platform does it


@pytest.mark.parametrize(
    ("mangle", "status", "message"),
    [
        pytest.param(
            lambda p: {**p, "appid": "nope"}, 401, "unknown appid 'nope'", id="unknown appid"
        ),
        pytest.param(
            lambda p: {k: v for k, v in p.items() if k != "appid"},
            400,
            "appid is required",
            id="no appid",
        ),
        pytest.param(
            lambda p: {k: v for k, v in p.items() if k != "timestamp"},
            400,
            "timestamp is required",
            id="no timestamp",
        ),
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
        pytest.param(
            lambda p: {k: v for k, v in p.items() if k != "sign"},
            401,
            "sign is required",
            id="no sign",
        ),
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
async def test_verification_rejections(
    sandbox: Client, mangle: Any, status: int, message: str
) -> None:
    params = mangle(signed({"tradeNo": "T"}))
    response = await sandbox.get(DETAIL, params=params)
    assert response.status == 200
    got_status, got_message = header(await response.json())
    assert got_status == status
    assert message in got_message
    assert SECRET not in got_message


async def test_timestamp_within_five_minutes_is_accepted(
    sandbox: Client, clock: MutableClock
) -> None:
    body = await call(sandbox, "GET", DETAIL, {"tradeNo": "T"}, now_ms=clock.now - 299_000)
    assert header(body) == (404, "trade 'T' not found")


async def test_sign_error_explains_what_was_signed(sandbox: Client) -> None:
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


async def test_wrong_method_and_unknown_endpoint(sandbox: Client) -> None:
    assert header(await call(sandbox, "POST", DETAIL, {"tradeNo": "T"}))[0] == 405
    assert header(await call(sandbox, "GET", "/neuopenapi/nothing/here"))[0] == 404


async def test_echo_verifies_and_reports_files(sandbox: Client) -> None:
    from aiohttp import FormData

    form = FormData()
    for key, value in signed({"title": "t"}).items():
        form.add_field(key, value)
    form.add_field("fileData", b"abc", filename="a.txt")
    body = await (await sandbox.post("/neuopenapi/sandbox/echo", data=form)).json()
    assert header(body) == (200, "OK")
    assert body["response"]["params"]["title"] == "t"
    assert body["response"]["files"][0]["size"] == 3


# Login, codes and tokens


async def test_code_exchanges_once(sandbox: Client) -> None:
    code = (await login(sandbox))["code"]
    params = {"code": code, "grantType": "authorization_code", "scope": "user.info"}
    first = await call(sandbox, "POST", TOKEN, params)
    assert header(first) == (200, "OK")
    assert first["response"]["expire"] == 2
    assert first["response"]["tokenType"] == "bearer"
    again = await call(sandbox, "POST", TOKEN, params)
    assert header(again) == (400, "invalid code: it was already exchanged (a code is single-use)")


async def test_code_expires_after_five_minutes(sandbox: Client, clock: MutableClock) -> None:
    code = (await login(sandbox))["code"]
    clock.advance(301)
    body = await call(
        sandbox,
        "POST",
        TOKEN,
        {"code": code, "grantType": "authorization_code", "scope": "user.info"},
        now_ms=clock.now,
    )
    assert header(body) == (400, "invalid code: it expired (codes live 5 minutes)")


@pytest.mark.parametrize(
    ("params", "message"),
    [
        pytest.param(
            {"code": "nope", "grantType": "authorization_code", "scope": "user.info"},
            "invalid code",
            id="unknown code",
        ),
        pytest.param(
            {"code": "x", "grantType": "password", "scope": "user.info"},
            "grantType: must be one of",
            id="grant type",
        ),
        pytest.param(
            {"code": "x", "grantType": "authorization_code", "scope": "admin"},
            "scope: unknown admin",
            id="scope",
        ),
        pytest.param(
            {"grantType": "authorization_code", "scope": "user.info"},
            "code: required",
            id="no code",
        ),
    ],
)
async def test_exchange_rejections(sandbox: Client, params: dict[str, str], message: str) -> None:
    body = await call(sandbox, "POST", TOKEN, params)
    assert header(body)[0] == 400
    assert message in header(body)[1]


async def test_code_of_another_app_is_refused(sandbox: Client) -> None:
    code = (await login(sandbox, appid=OTHER_APPID))["code"]
    body = await call(
        sandbox,
        "POST",
        TOKEN,
        {"code": code, "grantType": "authorization_code", "scope": "user.info"},
    )
    assert header(body) == (400, "invalid code: not issued to this app")


async def test_token_is_an_hs512_jwt_with_the_documented_claims(sandbox: Client) -> None:
    token = await token_for(sandbox, scope="user.info,user.phone")
    head, body, _ = token.split(".")
    assert jwt._unb64(head) == b'{"typ":"JWT","alg":"HS512"}'
    import json

    claims = json.loads(jwt._unb64(body))
    assert set(claims) >= {"openId", "clientId", "scope", "iat", "exp"}
    assert claims["clientId"] == APPID
    assert claims["exp"] - claims["iat"] == 2


async def test_user_info_by_scope(sandbox: Client) -> None:
    info_only = await call(
        sandbox, "GET", USER_INFO, {"accessToken": await token_for(sandbox, "13800000000")}
    )
    assert header(info_only) == (200, "OK")
    assert info_only["response"]["phone"] is None
    with_phone = await call(
        sandbox,
        "GET",
        USER_INFO,
        {"accessToken": await token_for(sandbox, "13800000000", "user.info,user.phone")},
    )
    assert with_phone["response"]["phone"] == "13800000000"
    assert set(with_phone["response"]) == {
        "openId",
        "nickName",
        "avatar",
        "email",
        "country",
        "phone",
        "unionId",
    }


async def test_open_id_is_per_app_and_union_id_per_user(sandbox: Client) -> None:
    alice_here = (await login(sandbox, "alice"))["openId"]
    assert (await login(sandbox, "alice"))["openId"] == alice_here
    alice_there = (await login(sandbox, "alice", appid=OTHER_APPID))["openId"]
    assert alice_there != alice_here
    assert (await login(sandbox, "bob"))["openId"] != alice_here
    here = await call(sandbox, "GET", USER_INFO, {"accessToken": await token_for(sandbox, "alice")})
    assert here["response"]["openId"] == alice_here
    code = (await login(sandbox, "alice", appid=OTHER_APPID))["code"]
    token = (
        await call(
            sandbox,
            "POST",
            TOKEN,
            {"code": code, "grantType": "authorization_code", "scope": "user.info"},
            appid=OTHER_APPID,
        )
    )["response"]["accessToken"]
    there = await call(sandbox, "GET", USER_INFO, {"accessToken": token}, appid=OTHER_APPID)
    assert there["response"]["unionId"] == here["response"]["unionId"]


@pytest.mark.parametrize(
    ("token", "message"),
    [
        pytest.param("", "accessToken: required", id="missing"),
        pytest.param("not-a-jwt", "malformed", id="malformed"),
        pytest.param("a.b.c", "malformed", id="three garbage parts"),
    ],
)
async def test_user_info_rejects_bad_tokens(sandbox: Client, token: str, message: str) -> None:
    body = await call(sandbox, "GET", USER_INFO, {"accessToken": token} if token else {})
    assert header(body)[0] in (400, 401)
    assert message in header(body)[1]


async def test_user_info_rejects_an_expired_token(sandbox: Client, clock: MutableClock) -> None:
    token = await token_for(sandbox)
    clock.advance(2)
    body = await call(sandbox, "GET", USER_INFO, {"accessToken": token})
    assert header(body) == (401, "invalid accessToken: expired; the user must log in again")


async def test_user_info_rejects_a_token_of_another_app(sandbox: Client) -> None:
    token = await token_for(sandbox)
    body = await call(sandbox, "GET", USER_INFO, {"accessToken": token}, appid=OTHER_APPID)
    assert header(body) == (401, "invalid accessToken: issued to another app")


async def test_login_rejections(sandbox: Client) -> None:
    assert (await sandbox.post("/sandbox/login", data={"user": "a", "appid": "nope"})).status == 404
    assert (await sandbox.post("/sandbox/login", data={"user": " ", "appid": APPID})).status == 400
    # Two apps are registered here, so the appid cannot be guessed.
    assert (await sandbox.post("/sandbox/login", data={"user": "a"})).status == 400


# Trades and payment notifications


async def new_trade(sandbox: Client, notify_url: str, **extra: str) -> str:
    open_id = (await login(sandbox, "payer"))["openId"]
    params = {
        "outTradeNo": extra.pop("outTradeNo", "order-1"),
        "amount": "100",
        "currency": "USD",
        "openId": open_id,
        "notifyUrl": notify_url,
        **extra,
    }
    body = await call(sandbox, "POST", TRADE, params)
    assert header(body) == (200, "OK"), body
    assert body["response"]["outTradeNo"] == params["outTradeNo"]
    trade_no: str = body["response"]["tradeNo"]
    return trade_no


DOC_DETAIL_FIELDS = {
    "tradeNo",
    "appId",
    "merchantId",
    "merchantLogoUrl",
    "merchantName",
    "description",
    "outTradeNo",
    "timeExpire",
    "amount",
    "amountStrWithYuan",
    "currency",
    "openId",
    "payer",
    "notifySuccess",
    "payType",
    "payNo",
    "payMethod",
    "transactionFlow",
    "transactionStatus",
    "failReasonType",
    "ctime",
    "mtime",
}


async def test_trade_detail_has_every_field_of_the_doc(sandbox: Client, receiver: Any) -> None:
    trade_no = await new_trade(sandbox, receiver.url)
    detail = (await call(sandbox, "GET", DETAIL, {"tradeNo": trade_no}))["response"]
    assert set(detail) == DOC_DETAIL_FIELDS
    assert (detail["transactionStatus"], detail["amount"], detail["amountStrWithYuan"]) == (
        1,
        100,
        "1.00",
    )


async def test_pay_succeeds_and_the_platform_notifies_once_signed(
    sandbox: Client, receiver: Any
) -> None:
    trade_no = await new_trade(sandbox, receiver.url)
    paid = await sandbox.post(f"/sandbox/trades/{trade_no}/pay", data={"result": "succeeded"})
    assert (await paid.json())["response"]["transactionStatus"] == 2
    [notification] = await receiver.wait_for(1)
    assert notification["tradeNo"] == trade_no
    assert (
        notification["transactionStatus"],
        notification["amount"],
        notification["currency"],
    ) == ("2", "100", "USD")
    assert notification["appid"] == APPID
    assert notification["sign"] == reference_sign(notification, SECRET)
    detail = (await call(sandbox, "GET", DETAIL, {"tradeNo": trade_no}))["response"]
    assert detail["transactionStatus"] == 2
    assert detail["payType"] is not None


async def test_pay_fails_with_a_reason_from_the_table(sandbox: Client, receiver: Any) -> None:
    trade_no = await new_trade(sandbox, receiver.url)
    paid = await sandbox.post(
        f"/sandbox/trades/{trade_no}/pay", data={"result": "failed", "failReasonType": "10"}
    )
    assert (await paid.json())["response"]["failReasonType"] == 10
    [notification] = await receiver.wait_for(1)
    assert notification["transactionStatus"] == "3"
    bad = await sandbox.post(f"/sandbox/trades/{trade_no}/pay", data={"result": "succeeded"})
    assert bad.status == 409


@pytest.mark.parametrize(
    ("data", "status"),
    [({"result": "maybe"}, 400), ({"result": "failed", "failReasonType": "99"}, 400)],
    ids=["unknown result", "reason not in the table"],
)
async def test_pay_rejections(
    sandbox: Client, receiver: Any, data: dict[str, str], status: int
) -> None:
    trade_no = await new_trade(sandbox, receiver.url)
    assert (await sandbox.post(f"/sandbox/trades/{trade_no}/pay", data=data)).status == status
    assert (
        await sandbox.post("/sandbox/trades/nope/pay", data={"result": "succeeded"})
    ).status == 404


async def test_notification_is_retried_until_a_2xx(sandbox: Client, receiver: Any) -> None:
    receiver.fail_first = 2
    trade_no = await new_trade(sandbox, receiver.url)
    await sandbox.post(f"/sandbox/trades/{trade_no}/pay", data={"result": "succeeded"})
    received = await receiver.wait_for(3)
    assert [r["tradeNo"] for r in received] == [trade_no] * 3
    await sandbox.app[NOTIFIER].idle()
    view = (await (await sandbox.get(f"/sandbox/trades/{trade_no}")).json())["response"]
    assert [n["httpStatus"] for n in view["notifications"]] == [500, 500, 200]
    assert view["detail"]["notifySuccess"] is True


async def test_notification_gives_up_after_the_configured_attempts(
    sandbox: Client, receiver: Any
) -> None:
    receiver.fail_first = 10
    trade_no = await new_trade(sandbox, receiver.url)
    await sandbox.post(f"/sandbox/trades/{trade_no}/pay", data={"result": "succeeded"})
    await sandbox.app[NOTIFIER].idle()
    assert len(receiver.received) == 3
    detail = (await call(sandbox, "GET", DETAIL, {"tradeNo": trade_no}))["response"]
    assert detail["notifySuccess"] is False


async def test_close_a_processing_trade(sandbox: Client, receiver: Any) -> None:
    trade_no = await new_trade(sandbox, receiver.url)
    assert header(await call(sandbox, "POST", CLOSE, {"tradeNo": trade_no})) == (200, "OK")
    detail = (await call(sandbox, "GET", DETAIL, {"tradeNo": trade_no}))["response"]
    assert detail["transactionStatus"] == 6
    [notification] = await receiver.wait_for(1)
    assert notification["transactionStatus"] == "6"
    again = await call(sandbox, "POST", CLOSE, {"tradeNo": trade_no})
    assert header(again) == (409, "trade is closed; only a processing trade can be closed")


async def test_trade_past_time_expire_becomes_expired(
    sandbox: Client, receiver: Any, clock: MutableClock
) -> None:
    trade_no = await new_trade(sandbox, receiver.url, timeExpire=str(clock.now + 60_000))
    clock.advance(61)
    detail = (await call(sandbox, "GET", DETAIL, {"tradeNo": trade_no}))["response"]
    assert (detail["transactionStatus"], detail["failReasonType"]) == (4, 21)
    [notification] = await receiver.wait_for(1)
    assert notification["transactionStatus"] == "4"


async def test_trade_expires_on_time_without_being_asked(
    aiohttp_client: Any, receiver: Any
) -> None:
    import time

    sandbox = await aiohttp_client(create_sandbox_app(SECRETS, Settings(notify_backoff_s=0.01)))
    trade_no = await new_trade(
        sandbox, receiver.url, timeExpire=str(time.time_ns() // 1_000_000 + 300)
    )
    [notification] = await receiver.wait_for(1)
    assert (notification["tradeNo"], notification["transactionStatus"]) == (trade_no, "4")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        pytest.param(
            {"outTradeNo": "bad no!"},
            "outTradeNo: only letters, digits and _ - *",
            id="outTradeNo pattern",
        ),
        pytest.param({"amount": "0"}, "amount: must be a positive whole number", id="zero amount"),
        pytest.param(
            {"amount": "1.5"}, "amount: must be a positive whole number", id="fractional amount"
        ),
        pytest.param(
            {"currency": "EUR"}, "currency: must be one of CNY, USD, SGD, SAR", id="currency"
        ),
        pytest.param(
            {"notifyUrl": "not a url"}, "notifyUrl: must be an http(s) URL", id="notifyUrl"
        ),
        pytest.param(
            {"notifyUrl": "https://x.example/n?a=1"},
            "notifyUrl: must be an http(s) URL",
            id="notifyUrl with query",
        ),
        pytest.param({"openId": ""}, "openId: required", id="no openId"),
        pytest.param(
            {"openId": "stranger"}, "openIds not of this app's users: stranger", id="unknown user"
        ),
        pytest.param(
            {"timeExpire": "1000"}, "timeExpire is in the past", id="timeExpire in the past"
        ),
    ],
)
async def test_trade_validation(
    sandbox: Client, receiver: Any, change: dict[str, str], message: str
) -> None:
    open_id = (await login(sandbox, "payer"))["openId"]
    params = {
        "outTradeNo": "o-1",
        "amount": "100",
        "currency": "USD",
        "openId": open_id,
        "notifyUrl": receiver.url,
    }
    body = await call(sandbox, "POST", TRADE, {**params, **change})
    assert header(body)[0] == 400
    assert message in header(body)[1]


async def test_out_trade_no_is_unique_per_merchant(sandbox: Client, receiver: Any) -> None:
    await new_trade(sandbox, receiver.url, outTradeNo="dup")
    open_id = (await login(sandbox, "payer"))["openId"]
    params = {
        "outTradeNo": "dup",
        "amount": "1",
        "currency": "SAR",
        "openId": open_id,
        "notifyUrl": receiver.url,
    }
    assert header(await call(sandbox, "POST", TRADE, params))[1] == (
        "outTradeNo 'dup' is already used by this merchant"
    )
    assert header(await call(sandbox, "POST", TRADE, {**params, "merchantId": "m2"}))[0] == 200


async def test_trade_of_another_app_is_not_found(sandbox: Client, receiver: Any) -> None:
    trade_no = await new_trade(sandbox, receiver.url)
    body = await call(sandbox, "GET", DETAIL, {"tradeNo": trade_no}, appid=OTHER_APPID)
    assert header(body)[0] == 404


# Messages


def notify_params(open_ids: str, **change: str) -> dict[str, str]:
    return {
        "notifyType": "1",
        "openIds": open_ids,
        "title": "Paid",
        "text": "Thanks",
        "navigateType": "2",
        "url": "https://shop.example/o/1",
        "language": "en_US",
        **change,
    }


def activity_params(open_ids: str, **change: str) -> dict[str, str]:
    return {
        "activityId": "act-1",
        "openIds": open_ids,
        "color": "FFFFFF",
        "templateId": "1",
        "title": "Flight",
        "text": "Boarding 10:40",
        "iconUrl": "https://x.example/i.png",
        "status": "1",
        "validityTime": "120",
        "language": "ar_SA",
        **change,
    }


async def test_notify_and_activity_reach_the_inbox(sandbox: Client, clock: MutableClock) -> None:
    alice = (await login(sandbox, "alice"))["openId"]
    bob = (await login(sandbox, "bob"))["openId"]
    assert header(await call(sandbox, "POST", NOTIFY, notify_params(f"{alice},{bob}"))) == (
        200,
        "OK",
    )
    assert header(await call(sandbox, "POST", ACTIVITY, activity_params(alice))) == (200, "OK")
    inbox = (await (await sandbox.get(f"/sandbox/inbox/{alice}")).json())["response"]
    assert [n["title"] for n in inbox["notifications"]] == ["Paid"]
    assert [a["activityId"] for a in inbox["activities"]] == ["act-1"]
    bobs = (await (await sandbox.get(f"/sandbox/inbox/{bob}")).json())["response"]
    assert (len(bobs["notifications"]), bobs["activities"]) == (1, [])
    clock.advance(121)
    expired = (await (await sandbox.get(f"/sandbox/inbox/{alice}")).json())["response"]
    assert expired["activities"] == []


async def test_activity_with_status_0_is_removed(sandbox: Client) -> None:
    alice = (await login(sandbox, "alice"))["openId"]
    await call(sandbox, "POST", ACTIVITY, activity_params(alice))
    await call(sandbox, "POST", ACTIVITY, activity_params(alice, status="0"))
    inbox = (await (await sandbox.get(f"/sandbox/inbox/{alice}")).json())["response"]
    assert inbox["activities"] == []


@pytest.mark.parametrize(
    ("change", "message"),
    [
        pytest.param({"navigateType": "3"}, "navigateType: must be one of 1, 2", id="navigateType"),
        pytest.param(
            {"url": ""}, "url: required when navigateType is 2", id="url for navigateType 2"
        ),
        pytest.param({"notifyType": "2"}, "notifyType: must be one of 1", id="notifyType"),
        pytest.param(
            {"language": "fr_FR"}, "language: must be one of zh_CN, en_US, ar_SA", id="language"
        ),
        pytest.param({"title": ""}, "title: required", id="title"),
        pytest.param({"text": ""}, "text: required", id="text"),
        pytest.param({"openIds": "stranger"}, "openIds not of this app's users", id="stranger"),
    ],
)
async def test_notify_validation(sandbox: Client, change: dict[str, str], message: str) -> None:
    alice = (await login(sandbox, "alice"))["openId"]
    body = await call(sandbox, "POST", NOTIFY, notify_params(alice, **change))
    assert header(body)[0] == 400
    assert message in header(body)[1]


async def test_navigate_type_1_needs_no_url(sandbox: Client) -> None:
    alice = (await login(sandbox, "alice"))["openId"]
    assert (
        header(await call(sandbox, "POST", NOTIFY, notify_params(alice, navigateType="1", url="")))[
            0
        ]
        == 200
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        pytest.param({"status": "2"}, "status: must be one of 0, 1", id="status"),
        pytest.param(
            {"validityTime": "0"},
            "validityTime: must be a positive whole number",
            id="validityTime",
        ),
        pytest.param({"color": ""}, "color: required", id="color"),
        pytest.param({"templateId": ""}, "templateId: required", id="templateId"),
        pytest.param({"iconUrl": ""}, "iconUrl: required", id="iconUrl"),
        pytest.param({"activityId": ""}, "activityId: required", id="activityId"),
    ],
)
async def test_activity_validation(sandbox: Client, change: dict[str, str], message: str) -> None:
    alice = (await login(sandbox, "alice"))["openId"]
    body = await call(sandbox, "POST", ACTIVITY, activity_params(alice, **change))
    assert header(body)[0] == 400
    assert message in header(body)[1]


async def test_every_problem_is_listed_at_once(sandbox: Client) -> None:
    body = await call(sandbox, "POST", NOTIFY, {"navigateType": "2"})
    problems = header(body)[1].removeprefix("invalid parameters: ").split("; ")
    assert problems == [
        "notifyType: required",
        "openIds: required",
        "title: required",
        "text: required",
        "language: required",
        "url: required when navigateType is 2 (navigate to a URL)",
    ]


# Faults, reset, stats


async def test_fault_status_then_clear(sandbox: Client) -> None:
    response = await sandbox.post("/sandbox/faults", json={"path": DETAIL, "status": 503})
    assert response.status == 200
    faulted = await sandbox.get(DETAIL, params=signed({"tradeNo": "T"}))
    assert faulted.status == 503
    await sandbox.delete("/sandbox/faults")
    assert (await sandbox.get(DETAIL, params=signed({"tradeNo": "T"}))).status == 200


async def test_fault_times_limits_how_often_it_fires(sandbox: Client) -> None:
    await sandbox.post("/sandbox/faults", data={"path": DETAIL, "status": "500", "times": "1"})
    assert (await sandbox.get(DETAIL, params=signed({"tradeNo": "T"}))).status == 500
    assert (await sandbox.get(DETAIL, params=signed({"tradeNo": "T"}))).status == 200


async def test_fault_reset_drops_the_connection(sandbox: Client) -> None:
    import aiohttp

    await sandbox.post("/sandbox/faults", data={"path": CLOSE, "reset": "true"})
    with pytest.raises(aiohttp.ClientError):
        await sandbox.post(CLOSE, data=signed({"tradeNo": "T"}))


async def test_fault_hang_lasts_until_cleared(sandbox: Client) -> None:
    await sandbox.post("/sandbox/faults", data={"path": DETAIL, "hang": "1"})
    pending = asyncio.ensure_future(sandbox.get(DETAIL, params=signed({"tradeNo": "T"})))
    done, _ = await asyncio.wait({pending}, timeout=0.2)
    assert not done
    await sandbox.delete("/sandbox/faults", params={"path": DETAIL})
    assert (await pending).status == 200


async def test_fault_delay(sandbox: Client) -> None:
    import time

    await sandbox.post("/sandbox/faults", data={"path": DETAIL, "delay_s": "0.2"})
    started = time.monotonic()
    await sandbox.get(DETAIL, params=signed({"tradeNo": "T"}))
    assert time.monotonic() - started >= 0.2


@pytest.mark.parametrize(
    "data", [{"path": "/elsewhere"}, {"path": DETAIL, "status": "abc"}], ids=["path", "status"]
)
async def test_fault_rejections(sandbox: Client, data: dict[str, str]) -> None:
    assert (await sandbox.post("/sandbox/faults", data=data)).status == 400


async def test_reset_clears_everything(sandbox: Client, receiver: Any) -> None:
    trade_no = await new_trade(sandbox, receiver.url)
    await sandbox.post("/sandbox/faults", data={"path": TOKEN, "status": "500"})
    assert (await sandbox.post("/sandbox/reset")).status == 200
    assert header(await call(sandbox, "GET", DETAIL, {"tradeNo": trade_no}))[0] == 404
    stats = (await (await sandbox.get("/sandbox/stats")).json())["response"]
    assert stats["calls"] == {DETAIL: 1}
    assert (
        header(
            await call(
                sandbox,
                "POST",
                TOKEN,
                {"code": "x", "grantType": "authorization_code", "scope": "user.info"},
            )
        )[0]
        == 400
    )


async def test_stats_count_calls_per_path(sandbox: Client) -> None:
    for _ in range(3):
        await call(sandbox, "GET", DETAIL, {"tradeNo": "T"})
    stats = (await (await sandbox.get("/sandbox/stats")).json())["response"]
    assert stats["calls"][DETAIL] == 3


# Secret rotation


async def signed_with(sandbox: Client, secret: str, now_ms: int) -> tuple[int, str]:
    fields = {"tradeNo": "none", "appid": APPID, "timestamp": str(now_ms)}
    fields["sign"] = reference_sign(fields, secret)
    response = await sandbox.get(DETAIL, params=fields)
    return header(await response.json())


async def rotate(sandbox: Client, **form: str) -> tuple[int, Any]:
    response = await sandbox.post(f"/sandbox/apps/{APPID}/secret", data=form)
    body = await response.json()
    return body["responseHeader"]["status"], body["response"]


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


async def test_the_same_secret_again_with_no_grace_retires_the_old_one(
    sandbox: Client, clock: MutableClock
) -> None:
    await rotate(sandbox, secret="new-secret")
    assert (await signed_with(sandbox, SECRET, clock.now))[0] == 404
    await rotate(sandbox, secret="new-secret", keep_previous_s="0")
    assert (await signed_with(sandbox, SECRET, clock.now))[0] == 401


@pytest.mark.parametrize(
    "form",
    [
        pytest.param({}, id="no secret"),
        pytest.param({"secret": "x", "keep_previous_s": "nan"}, id="nan"),
        pytest.param({"secret": "x", "keep_previous_s": "-1"}, id="negative"),
        pytest.param({"secret": "x", "keep_previous_s": "soon"}, id="not a number"),
    ],
)
async def test_a_bad_rotation_is_refused(sandbox: Client, form: dict[str, str]) -> None:
    assert (await rotate(sandbox, **form))[0] == 400


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
    assert (await response.json())["responseHeader"]["status"] == 400
