"""The platform's state and rules: users, login codes, tokens, trades and messages.

Synchronous and free of I/O; the server calls it, and it reports every trade that reaches a
final status through `on_final`, which is where payment notifications start.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway.core import jwt
from gateway.core.clock import Clock

PROCESSING, SUCCEEDED, FAILED, EXPIRED, CANCELED, CLOSED = 1, 2, 3, 4, 5, 6
STATUS_NAMES = {
    PROCESSING: "processing",
    SUCCEEDED: "succeeded",
    FAILED: "failed",
    EXPIRED: "expired",
    CANCELED: "canceled",
    CLOSED: "closed",
}
# The doc's FailReasonTypeEnum.
FAIL_REASONS = {
    1: "Google Pay unready",
    2: "Google Pay error",
    3: "Google Pay token generate network error",
    4: "Google Pay token generate error",
    5: "PayTabs payment error",
    6: "PayTabs 3D Secure authentication rejected",
    10: "Apple Pay error",
    11: "Apple Pay unsupport",
    20: "out order is succeeded",
    21: "transaction is expired",
    22: "transaction is closed",
    23: "out order is in payment",
    24: "checkout failed",
    25: "checkout request payment failed",
    26: "stripe create payment failed",
    27: "transaction failed",
}
NO_FAIL_REASON = -1
_PHONE = re.compile(r"^\+?[0-9]{6,15}$")


class SandboxError(Exception):
    """The platform refuses; `status` is what goes into responseHeader.status."""

    def __init__(self, status: int, msg: str) -> None:
        self.status = status
        self.msg = msg
        super().__init__(msg)


@dataclass(frozen=True)
class Settings:
    token_expire_s: int = 604800
    code_ttl_s: int = 300
    notify_attempts: int = 5
    notify_backoff_s: float = 1.0
    explain: bool = True
    # The platform's clock (and its Date header) this far ahead of the host's, or behind.
    clock_offset_s: float = 0.0


@dataclass
class Trade:
    detail: dict[str, Any]
    notify_url: str
    notifications: list[dict[str, Any]] = field(default_factory=list)

    @property
    def status(self) -> int:
        status: int = self.detail["transactionStatus"]
        return status


@dataclass
class _Code:
    appid: str
    user: str
    expires_ms: int
    used: bool = False


def _digest(*parts: str) -> str:
    return hashlib.sha256(":".join(parts).encode()).hexdigest()[:32]


def open_id(appid: str, user: str) -> str:
    """Stable for one user in one app, different in another app, as on the platform."""
    return _digest("openId", appid, user)


def union_id(user: str) -> str:
    """The same for one user across every app."""
    return _digest("unionId", user)


def _phone_of(user: str) -> str:
    if _PHONE.fullmatch(user):
        return user.lstrip("+")
    return "1" + str(int(_digest("phone", user), 16))[:10]


class World:
    def __init__(
        self,
        secrets_by_appid: Mapping[str, str],
        settings: Settings,
        clock: Clock,
        on_final: Callable[[Trade], None] | None = None,
    ) -> None:
        self.secrets = dict(secrets_by_appid)
        # appid -> (the secret before the last rotation, until when it is still accepted)
        self._previous: dict[str, tuple[str, int]] = {}
        self.settings = settings
        self.clock = clock
        self.on_final = on_final or (lambda trade: None)
        self._token_key = secrets.token_bytes(64)
        self.reset()

    def rotate(self, appid: str, secret: str, keep_previous_s: float) -> None:
        """A new secret for the app, as a platform console gives one: the old one is still
        accepted for keep_previous_s, so requests already signed with it do not fail."""
        if appid not in self.secrets:
            raise SandboxError(404, f"unknown appid {appid[:64]!r}")
        if not secret:
            raise SandboxError(400, "secret is required")
        until = self.clock.now_ms() + int(keep_previous_s * 1000)
        if secret != self.secrets[appid]:
            self._previous[appid] = (self.secrets[appid], until)
            self.secrets[appid] = secret
        elif appid in self._previous:
            # The same secret again: the old one's grace can only get shorter (0 ends it).
            old, old_until = self._previous[appid]
            self._previous[appid] = (old, min(old_until, until))

    def previous_secret(self, appid: str) -> str | None:
        """The app's secret before its last rotation, while it is still accepted."""
        previous = self._previous.get(appid)
        if previous is None or self.clock.now_ms() >= previous[1]:
            return None
        return previous[0]

    def reset(self) -> None:
        self.calls: Counter[str] = Counter()
        self._codes: dict[str, _Code] = {}
        self._users: dict[str, tuple[str, str]] = {}  # openId -> (appid, user)
        self._trades: dict[str, Trade] = {}
        self._out_trade_nos: set[tuple[str, str]] = set()
        self._notifications: dict[str, list[dict[str, Any]]] = {}
        self._activities: dict[tuple[str, str, str], dict[str, Any]] = {}

    # Login and tokens

    def login(self, appid: str, user: str) -> dict[str, Any]:
        """What neu.login() / neu.getAuthCode() give the mini app: a one-time code."""
        if appid not in self.secrets:
            raise SandboxError(404, f"unknown appid {appid[:64]!r}")
        user = user.strip()
        if not user:
            raise SandboxError(400, "user is required: a phone number or a name")
        code = str(uuid.uuid4())
        self._codes[code] = _Code(
            appid, user, self.clock.now_ms() + self.settings.code_ttl_s * 1000
        )
        openid = open_id(appid, user)
        self._users[openid] = (appid, user)
        return {"code": code, "expiresIn": self.settings.code_ttl_s, "openId": openid}

    def exchange(self, appid: str, params: Mapping[str, str]) -> dict[str, Any]:
        code = self._codes.get(params["code"])
        if code is None or code.appid != appid:
            raise SandboxError(400, "invalid code: not issued to this app")
        if code.used:
            raise SandboxError(400, "invalid code: it was already exchanged (a code is single-use)")
        if self.clock.now_ms() >= code.expires_ms:
            raise SandboxError(400, "invalid code: it expired (codes live 5 minutes)")
        code.used = True
        now_s = self.clock.now_ms() // 1000
        claims = {
            "iat": now_s,
            "nbf": now_s,
            "exp": now_s + self.settings.token_expire_s,
            "openId": open_id(appid, code.user),
            "clientId": appid,
            "scope": params["scope"],
        }
        return {
            "accessToken": jwt.encode(claims, self._token_key),
            "expire": self.settings.token_expire_s,
            "tokenType": "bearer",
        }

    def user_info(self, appid: str, access_token: str) -> dict[str, Any]:
        try:
            claims = jwt.decode(access_token, self._token_key)
        except jwt.TokenError:
            raise SandboxError(
                401, "invalid accessToken: malformed or not issued by the platform"
            ) from None
        if self.clock.now_ms() // 1000 >= int(claims.get("exp", 0)):
            raise SandboxError(401, "invalid accessToken: expired; the user must log in again")
        if claims.get("clientId") != appid:
            raise SandboxError(401, "invalid accessToken: issued to another app")
        openid = str(claims.get("openId", ""))
        if openid not in self._users:
            raise SandboxError(401, "invalid accessToken: its user is unknown (sandbox reset?)")
        _, user = self._users[openid]
        scopes = str(claims.get("scope", "")).split(",")
        return {
            "openId": openid,
            "nickName": user if not _PHONE.fullmatch(user) else f"user{user[-4:]}",
            "avatar": f"https://sandbox.invalid/avatar/{openid}.png",
            "email": None,
            "country": "+86",
            "phone": _phone_of(user) if "user.phone" in scopes else None,
            "unionId": union_id(user),
        }

    def _require_users(self, appid: str, openids: list[str]) -> None:
        strangers = [o for o in openids if self._users.get(o, ("",))[0] != appid]
        if strangers:
            raise SandboxError(
                400,
                f"openIds not of this app's users: {', '.join(s[:40] for s in strangers)} "
                "(a user appears once logged in via /sandbox/login)",
            )

    # Trades

    def create_trade(self, appid: str, params: Mapping[str, str]) -> dict[str, Any]:
        now = self.clock.now_ms()
        merchant = params.get("merchantId") or f"m{_digest('merchant', appid)[:20]}"
        out_trade_no = params["outTradeNo"]
        if (merchant, out_trade_no) in self._out_trade_nos:
            raise SandboxError(400, f"outTradeNo {out_trade_no!r} is already used by this merchant")
        self._require_users(appid, [params["openId"]])
        time_expire = int(params["timeExpire"]) if params.get("timeExpire") else None
        if time_expire is not None and time_expire <= now:
            raise SandboxError(400, "timeExpire is in the past (milliseconds since the epoch)")
        amount = int(params["amount"])
        trade_no = uuid.uuid4().hex
        detail = {
            "tradeNo": trade_no,
            "appId": appid,
            "merchantId": merchant,
            "merchantLogoUrl": "https://sandbox.invalid/merchant/logo.png",
            "merchantName": "Sandbox Merchant",
            "description": params.get("description", ""),
            "outTradeNo": out_trade_no,
            "timeExpire": time_expire,
            "amount": amount,
            "amountStrWithYuan": f"{amount // 100}.{amount % 100:02d}",
            "currency": params["currency"],
            "openId": params["openId"],
            "payer": int(_digest("payer", params["openId"])[:13], 16),
            "notifySuccess": None,
            "payType": None,
            "payNo": None,
            "payMethod": None,
            "transactionFlow": 2,
            "transactionStatus": PROCESSING,
            "failReasonType": NO_FAIL_REASON,
            "ctime": now,
            "mtime": now,
        }
        self._out_trade_nos.add((merchant, out_trade_no))
        self._trades[trade_no] = Trade(detail, params["notifyUrl"])
        return {"outTradeNo": out_trade_no, "tradeNo": trade_no}

    def trade(self, trade_no: str, appid: str | None = None) -> Trade:
        trade = self._trades.get(trade_no)
        if trade is None or (appid is not None and trade.detail["appId"] != appid):
            raise SandboxError(404, f"trade {trade_no[:64]!r} not found")
        self.expire_if_due(trade)
        return trade

    def trade_detail(self, appid: str, trade_no: str) -> dict[str, Any]:
        return dict(self.trade(trade_no, appid).detail)

    def close_trade(self, appid: str, trade_no: str) -> bool:
        trade = self.trade(trade_no, appid)
        self._require_processing(trade, "closed")
        self._finish(trade, CLOSED, 22)
        return True

    def pay(self, trade_no: str, result: str, fail_reason: int | None = None) -> dict[str, Any]:
        """What the payer's neu.requestPayment() leads to."""
        trade = self.trade(trade_no)
        self._require_processing(trade, "paid")
        if result == "succeeded":
            trade.detail.update(payType=1, payMethod=3, payNo=uuid.uuid4().hex)
            self._finish(trade, SUCCEEDED, NO_FAIL_REASON)
        elif result == "failed":
            reason = 27 if fail_reason is None else fail_reason
            if reason not in FAIL_REASONS:
                known = ", ".join(map(str, FAIL_REASONS))
                raise SandboxError(400, f"failReasonType must be one of {known}")
            self._finish(trade, FAILED, reason)
        else:
            raise SandboxError(400, "result must be succeeded or failed")
        return dict(trade.detail)

    def expire_if_due(self, trade: Trade) -> None:
        deadline = trade.detail["timeExpire"]
        if trade.status == PROCESSING and deadline is not None and self.clock.now_ms() >= deadline:
            self._finish(trade, EXPIRED, 21)

    def _require_processing(self, trade: Trade, what: str) -> None:
        if trade.status != PROCESSING:
            raise SandboxError(
                409,
                f"trade is {STATUS_NAMES[trade.status]}; only a processing trade can be {what}",
            )

    def _finish(self, trade: Trade, status: int, fail_reason: int) -> None:
        trade.detail.update(
            transactionStatus=status, failReasonType=fail_reason, mtime=self.clock.now_ms()
        )
        self.on_final(trade)

    # Messages

    def send_notify(self, appid: str, params: Mapping[str, str]) -> bool:
        openids = params["openIds"].split(",")
        self._require_users(appid, openids)
        fields = ("notifyType", "title", "text", "navigateType", "url", "link", "language")
        message: dict[str, Any] = {name: params.get(name, "") for name in fields}
        message.update(appId=appid, ctime=self.clock.now_ms())
        for openid in openids:
            self._notifications.setdefault(openid, []).append(message)
        return True

    def send_activity(self, appid: str, params: Mapping[str, str]) -> bool:
        openids = params["openIds"].split(",")
        self._require_users(appid, openids)
        now = self.clock.now_ms()
        fields = (
            "activityId",
            "color",
            "templateId",
            "title",
            "text",
            "iconUrl",
            "path",
            "language",
        )
        for openid in openids:
            key = (appid, params["activityId"], openid)
            if params["status"] == "0":
                # The doc: a message sent with status 0 is removed.
                self._activities.pop(key, None)
                continue
            activity: dict[str, Any] = {name: params.get(name, "") for name in fields}
            activity.update(
                appId=appid,
                validityTime=int(params["validityTime"]),
                ctime=now,
                expiresAt=now + int(params["validityTime"]) * 1000,
            )
            self._activities[key] = activity
        return True

    def inbox(self, openid: str) -> dict[str, Any]:
        now = self.clock.now_ms()
        live = [
            activity
            for (_, _, owner), activity in self._activities.items()
            if owner == openid and activity["expiresAt"] > now
        ]
        return {
            "openId": openid,
            "notifications": list(self._notifications.get(openid, [])),
            "activities": live,
        }
