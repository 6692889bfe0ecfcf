"""Logging in: a one-time code, exchanged once for an accessToken, whose user user/info tells."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest

from gateway.core import jwt
from gateway.core.verification import Rejected
from gateway.sandbox.world.apps import Apps
from gateway.sandbox.world.ids import open_id, union_id
from gateway.sandbox.world.logins import Logins
from gateway.sandbox.world.settings import Settings
from gateway.sandbox.world.users import Users
from tests.support.clock import MutableClock

APPID, OTHER_APPID = "app", "other-app"
KEY = b"k" * 64
SETTINGS = Settings(token_expire_s=2, code_ttl_s=300)


@dataclass
class Platform:
    clock: MutableClock
    apps: Apps
    users: Users
    logins: Logins

    def exchange(self, code: str, scope: str = "user.info", appid: str = APPID) -> str:
        params = {"code": code, "grantType": "authorization_code", "scope": scope}
        token: str = self.logins.exchange(appid, params)["accessToken"]
        return token

    def token_for(self, user: str, scope: str = "user.info", appid: str = APPID) -> str:
        return self.exchange(self.logins.login(appid, user)["code"], scope, appid)


@pytest.fixture
def platform() -> Platform:
    clock = MutableClock()
    apps = Apps({APPID: "s", OTHER_APPID: "t"}, clock)
    users = Users(apps, lambda kind: None)
    return Platform(clock, apps, users, Logins(apps, users, SETTINGS, clock, KEY))


def refusal(call: Callable[..., object], *args: object) -> tuple[int, str]:
    with pytest.raises(Rejected) as refused:
        call(*args)
    return refused.value.status, refused.value.msg


def test_a_login_gives_a_one_time_code_and_the_users_open_id(platform: Platform) -> None:
    login = platform.logins.login(APPID, " alice ")
    assert login["expiresIn"] == 300
    assert login["openId"] == open_id(APPID, "alice")
    assert platform.users.logged_in_as(login["openId"]) == (APPID, "alice")
    assert platform.logins.login(APPID, "alice")["code"] != login["code"]


def test_a_login_refused(platform: Platform) -> None:
    assert refusal(platform.logins.login, "nope", "alice") == (404, "unknown appid 'nope'")
    assert refusal(platform.logins.login, APPID, " ") == (
        400,
        "user is required: a phone number or a name",
    )


def test_a_code_is_exchanged_once(platform: Platform) -> None:
    code = platform.logins.login(APPID, "alice")["code"]
    params = {"code": code, "grantType": "authorization_code", "scope": "user.info"}
    first = platform.logins.exchange(APPID, params)
    assert (first["expire"], first["tokenType"]) == (2, "bearer")
    assert refusal(platform.logins.exchange, APPID, params) == (
        400,
        "invalid code: it was already exchanged (a code is single-use)",
    )


def test_a_code_lives_five_minutes(platform: Platform) -> None:
    fresh = platform.logins.login(APPID, "alice")["code"]
    stale = platform.logins.login(APPID, "alice")["code"]
    platform.clock.advance(299.999)
    platform.exchange(fresh)
    platform.clock.advance(0.001)
    assert refusal(platform.exchange, stale) == (
        400,
        "invalid code: it expired (codes live 5 minutes)",
    )


@pytest.mark.parametrize(
    "code_of", [lambda codes: "nope", lambda codes: codes["other"]], ids=["unknown", "other app"]
)
def test_a_code_not_issued_to_this_app_is_refused(
    platform: Platform, code_of: Callable[[dict[str, str]], str]
) -> None:
    codes = {"other": platform.logins.login(OTHER_APPID, "alice")["code"]}
    assert refusal(platform.exchange, code_of(codes)) == (
        400,
        "invalid code: not issued to this app",
    )


def test_the_token_is_an_hs512_jwt_with_the_documented_claims(platform: Platform) -> None:
    now_s = platform.clock.now_ms() // 1000
    token = platform.token_for("alice", "user.info,user.phone")
    assert jwt.decode(token, KEY) == {
        "iat": now_s,
        "nbf": now_s,
        "exp": now_s + 2,
        "openId": open_id(APPID, "alice"),
        "clientId": APPID,
        "scope": "user.info,user.phone",
    }
    assert token.split(".")[0] == "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzUxMiJ9"


def test_user_info_tells_the_phone_only_with_its_scope(platform: Platform) -> None:
    info = platform.logins.user_info(APPID, platform.token_for("13800000000"))
    assert info == {
        "openId": open_id(APPID, "13800000000"),
        "nickName": "user0000",
        "avatar": f"https://sandbox.invalid/avatar/{open_id(APPID, '13800000000')}.png",
        "email": None,
        "country": "+86",
        "phone": None,
        "unionId": union_id("13800000000"),
    }
    with_phone = platform.token_for("13800000000", "user.info,user.phone")
    assert platform.logins.user_info(APPID, with_phone)["phone"] == "13800000000"


def test_user_info_tells_a_profile_made_on_the_page(platform: Platform) -> None:
    platform.users.create_user("Alice", "+966500000001", "966")
    token = platform.token_for("966500000001", "user.info,user.phone")
    info = platform.logins.user_info(APPID, token)
    assert (info["nickName"], info["phone"], info["country"]) == ("Alice", "966500000001", "+966")


def test_the_same_user_has_one_union_id_across_apps(platform: Platform) -> None:
    here = platform.logins.user_info(APPID, platform.token_for("alice"))
    there = platform.logins.user_info(OTHER_APPID, platform.token_for("alice", appid=OTHER_APPID))
    assert here["openId"] != there["openId"]
    assert here["unionId"] == there["unionId"]


@pytest.mark.parametrize(
    "token",
    ["not-a-jwt", "a.b.c", jwt.encode({"openId": "o", "exp": 2**40}, b"another key")],
    ids=["no JWT", "three garbage parts", "signed with another key"],
)
def test_user_info_refuses_a_token_the_platform_did_not_issue(
    platform: Platform, token: str
) -> None:
    assert refusal(platform.logins.user_info, APPID, token) == (
        401,
        "invalid accessToken: malformed or not issued by the platform",
    )


def test_user_info_refuses_an_expired_token(platform: Platform) -> None:
    # On a whole second: the token's claims count seconds.
    platform.clock.now = 1_700_000_000_000
    token = platform.token_for("alice")
    platform.clock.advance(1.999)
    platform.logins.user_info(APPID, token)
    platform.clock.advance(0.001)
    assert refusal(platform.logins.user_info, APPID, token) == (
        401,
        "invalid accessToken: expired; the user must log in again",
    )


def test_user_info_refuses_a_token_of_another_app(platform: Platform) -> None:
    assert refusal(platform.logins.user_info, OTHER_APPID, platform.token_for("alice")) == (
        401,
        "invalid accessToken: issued to another app",
    )


def test_user_info_refuses_a_token_whose_user_is_forgotten(platform: Platform) -> None:
    token = platform.token_for("alice")
    forgetful = Logins(
        platform.apps, Users(platform.apps, lambda kind: None), SETTINGS, platform.clock, KEY
    )
    assert refusal(forgetful.user_info, APPID, token) == (
        401,
        "invalid accessToken: its user is unknown (sandbox reset?)",
    )
