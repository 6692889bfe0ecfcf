"""Logging in: the one-time code neu.login() gives a mini app, exchanged once for an
accessToken (an HS512 JWT of the platform's own), and the user that token stands for."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gateway.core import jwt
from gateway.core.clock import Clock
from gateway.core.verification import Rejected
from gateway.sandbox.world.apps import Apps
from gateway.sandbox.world.ids import open_id, union_id
from gateway.sandbox.world.settings import Settings
from gateway.sandbox.world.users import Users


@dataclass
class Code:
    appid: str
    user: str
    expires_ms: int
    used: bool = False


class Logins:
    def __init__(
        self, apps: Apps, users: Users, settings: Settings, clock: Clock, token_key: bytes
    ) -> None:
        self._apps = apps
        self._users = users
        self._settings = settings
        self._clock = clock
        self._token_key = token_key
        self._codes: dict[str, Code] = {}

    def login(self, appid: str, user: str) -> dict[str, Any]:
        """What neu.login() / neu.getAuthCode() give the mini app: a one-time code."""
        self._apps.require(appid)
        user = user.strip()
        if not user:
            raise Rejected(400, "user is required: a phone number or a name")
        code = str(uuid.uuid4())
        self._codes[code] = Code(
            appid, user, self._clock.now_ms() + self._settings.code_ttl_s * 1000
        )
        openid = self._users.log_in(appid, user)
        return {"code": code, "expiresIn": self._settings.code_ttl_s, "openId": openid}

    def exchange(self, appid: str, params: Mapping[str, str]) -> dict[str, Any]:
        """oauth/mini/accessToken: the code's accessToken, once."""
        code = self._codes.get(params["code"])
        if code is None or code.appid != appid:
            raise Rejected(400, "invalid code: not issued to this app")
        if code.used:
            raise Rejected(400, "invalid code: it was already exchanged (a code is single-use)")
        if self._clock.now_ms() >= code.expires_ms:
            raise Rejected(400, "invalid code: it expired (codes live 5 minutes)")
        code.used = True
        now_s = self._clock.now_ms() // 1000
        claims = {
            "iat": now_s,
            "nbf": now_s,
            "exp": now_s + self._settings.token_expire_s,
            "openId": open_id(appid, code.user),
            "clientId": appid,
            "scope": params["scope"],
        }
        return {
            "accessToken": jwt.encode(claims, self._token_key),
            "expire": self._settings.token_expire_s,
            "tokenType": "bearer",
        }

    def user_info(self, appid: str, access_token: str) -> dict[str, Any]:
        """oauth/mini/user/info: the token's user, the phone only with the user.phone scope."""
        try:
            claims = jwt.decode(access_token, self._token_key)
        except jwt.TokenError:
            raise Rejected(
                401, "invalid accessToken: malformed or not issued by the platform"
            ) from None
        if self._clock.now_ms() // 1000 >= int(claims.get("exp", 0)):
            raise Rejected(401, "invalid accessToken: expired; the user must log in again")
        if claims.get("clientId") != appid:
            raise Rejected(401, "invalid accessToken: issued to another app")
        openid = str(claims.get("openId", ""))
        logged_in = self._users.logged_in_as(openid)
        if logged_in is None:
            raise Rejected(401, "invalid accessToken: its user is unknown (sandbox reset?)")
        _, user = logged_in
        scopes = str(claims.get("scope", "")).split(",")
        profile = self._users.profile(user)
        return {
            "openId": openid,
            "nickName": profile.name,
            "avatar": f"https://sandbox.invalid/avatar/{openid}.png",
            "email": None,
            "country": profile.country,
            "phone": profile.phone if "user.phone" in scopes else None,
            "unionId": union_id(user),
        }
