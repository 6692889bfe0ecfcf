"""World, the one door to the platform's state: what it hands on, what it keeps across a
reset, and what it tells of changes."""

from __future__ import annotations

import pytest

from gateway.core.verification import Rejected
from gateway.sandbox.world import DEMO_USER, Settings, Trade, World, open_id, union_id
from tests.support.clock import MutableClock

APPID, OTHER_APPID = "app", "other-app"
SECRETS = {APPID: "app-secret", OTHER_APPID: "other-secret"}
# What the server, its controls, the simulator page and the notifier call.
PUBLIC = {
    "reset",
    "secrets",
    "rotate",
    "previous_secret",
    "known_secrets",
    "login",
    "exchange",
    "user_info",
    "profile",
    "create_user",
    "user_view",
    "users",
    "create_trade",
    "trade",
    "trade_detail",
    "close_trade",
    "pay",
    "let_expire",
    "trades",
    "expire_if_due",
    "send_notify",
    "send_activity",
    "inbox",
    "phone",
    "record_call",
}


@pytest.fixture
def clock() -> MutableClock:
    return MutableClock()


@pytest.fixture
def world(clock: MutableClock) -> World:
    return World(SECRETS, Settings(), clock)


def token_for(world: World, user: str) -> str:
    code = world.login(APPID, user)["code"]
    params = {"code": code, "grantType": "authorization_code", "scope": "user.info"}
    token: str = world.exchange(APPID, params)["accessToken"]
    return token


def new_trade(world: World, user: str = "payer") -> str:
    params = {
        "outTradeNo": "o-1",
        "amount": "100",
        "currency": "USD",
        "openId": world.login(APPID, user)["openId"],
        "notifyUrl": "https://shop.example/n",
    }
    trade_no: str = world.create_trade(APPID, params)["tradeNo"]
    return trade_no


def fresh_demo_user(world: World) -> dict[str, object]:
    return {
        "user": DEMO_USER.phone,
        "name": DEMO_USER.name,
        "phone": DEMO_USER.phone,
        "country": DEMO_USER.country,
        "unionId": union_id(DEMO_USER.phone),
        "openIds": {appid: open_id(appid, DEMO_USER.phone) for appid in world.secrets},
        "loggedIn": [],
    }


def test_a_fresh_world_has_the_demo_user_logged_in_nowhere(world: World) -> None:
    assert world.users() == [fresh_demo_user(world)]
    assert world.profile(DEMO_USER.phone) == DEMO_USER
    # Nobody is anybody's user until they log in: the demo user is no openId to send to yet.
    with pytest.raises(Rejected) as refused:
        world.send_notify(
            APPID,
            {
                "openIds": open_id(APPID, DEMO_USER.phone),
                "title": "t",
                "text": "x",
                "language": "en_US",
            },
        )
    assert refused.value.status == 400


def test_the_demo_user_logs_in_as_any_user_and_is_who_user_info_tells(world: World) -> None:
    code = world.login(APPID, DEMO_USER.phone)["code"]
    params = {"code": code, "grantType": "authorization_code", "scope": "user.info,user.phone"}
    info = world.user_info(APPID, world.exchange(APPID, params)["accessToken"])
    assert (info["nickName"], info["phone"], info["country"]) == (
        DEMO_USER.name,
        DEMO_USER.phone,
        DEMO_USER.country,
    )
    assert world.users()[0]["loggedIn"] == [APPID]


def test_the_facade_offers_what_its_callers_use(world: World) -> None:
    assert {name for name in PUBLIC if not hasattr(world, name)} == set()


def test_each_call_reaches_its_aggregate(world: World) -> None:
    token = token_for(world, "alice")
    assert world.user_info(APPID, token)["nickName"] == "alice"
    assert [u["user"] for u in world.users()] == [DEMO_USER.phone, "alice"]
    trade_no = new_trade(world)
    assert world.pay(trade_no, "succeeded")["transactionStatus"] == 2
    openid = world.login(APPID, "alice")["openId"]
    notify = {"openIds": openid, "title": "t", "text": "x", "language": "en_US"}
    assert world.send_notify(APPID, notify) is True
    assert [n["title"] for n in world.phone("alice")["notifications"]] == ["t"]


def test_a_reset_forgets_the_users_and_their_doings_but_not_the_apps(
    world: World, clock: MutableClock
) -> None:
    world.rotate(APPID, "new-secret", keep_previous_s=60)
    token = token_for(world, "alice")
    trade_no = new_trade(world)
    world.calls["/neuopenapi/x"] += 1
    world.record_call("GET", "/neuopenapi/x", {}, 200, "OK")
    world.login(APPID, DEMO_USER.phone)
    world.create_user("Someone else", DEMO_USER.phone)
    world.reset()
    # As fresh as at the start: the demo user alone, as it was, logged in nowhere.
    assert (world.users(), world.trades(), dict(world.calls), world.requests.entries()) == (
        [fresh_demo_user(world)],
        [],
        {},
        [],
    )
    with pytest.raises(Rejected) as unknown:
        world.trade(trade_no)
    assert unknown.value.status == 404
    with pytest.raises(Rejected) as forgotten:
        world.user_info(APPID, token)
    assert forgotten.value.msg == "invalid accessToken: its user is unknown (sandbox reset?)"
    assert dict(world.secrets) == {**SECRETS, APPID: "new-secret"}
    assert world.previous_secret(APPID) == "app-secret"


def test_changes_and_final_statuses_are_told_to_whoever_listens_now(world: World) -> None:
    changes: list[str] = []
    finals: list[Trade] = []
    world.on_change = changes.append
    world.on_final = finals.append
    trade_no = new_trade(world)
    world.close_trade(APPID, trade_no)
    assert changes == ["users", "trades", "trades"]
    assert [trade.detail["tradeNo"] for trade in finals] == [trade_no]
    world.reset()
    assert changes[-1] == "all"


def test_a_call_is_logged_with_every_secret_masked_even_a_rotated_out_one(
    world: World, clock: MutableClock
) -> None:
    changes: list[str] = []
    world.on_change = changes.append
    world.rotate(APPID, "new-secret", keep_previous_s=60)
    params = {"note": "app-secret and new-secret", "sign": "abc"}
    world.record_call("POST", "/neuopenapi/x", params, 401, "sign error: no", verdict=None)
    [entry] = world.requests.entries()
    assert (entry["at"], entry["method"], entry["status"], entry["verdict"]) == (
        clock.now_ms(),
        "POST",
        401,
        "refused",
    )
    assert entry["params"] == {"note": "****** and ******", "sign": "******"}
    assert changes == ["requests"]


def test_the_secrets_are_the_apps_current_ones(world: World) -> None:
    assert world.known_secrets() == list(SECRETS.values())
    world.rotate(OTHER_APPID, "rotated", keep_previous_s=0)
    assert world.secrets[OTHER_APPID] == "rotated"
    assert world.previous_secret(OTHER_APPID) is None
