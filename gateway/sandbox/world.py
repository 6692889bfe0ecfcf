"""The platform's state and rules: users, login codes, tokens, trades and messages.

Synchronous and free of I/O; the server calls it, and it reports every trade that reaches a
final status through `on_final`, which is where payment notifications start, and every change
a simulator page would show through `on_change` (a kind from events.KINDS).
"""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from collections import Counter
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway.core import jwt
from gateway.core.clock import Clock
from gateway.core.verification import Rejected
from gateway.sandbox.requestlog import RequestLog

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
# user/info's `country` is a calling code, "+86" in the doc's sample.
_COUNTRY = re.compile(r"^\+?[0-9]{1,4}$")
DEFAULT_COUNTRY = "+86"
MAX_NAME_CHARS = 64


@dataclass(frozen=True)
class Settings:
    token_expire_s: int = 604800
    code_ttl_s: int = 300
    notify_attempts: int = 5
    notify_backoff_s: float = 1.0
    explain: bool = True
    # The platform's clock (and its Date header) this far ahead of the host's, or behind.
    clock_offset_s: float = 0.0
    # Hosts besides loopback that the simulator's open-mini-app may POST a login code to, as
    # core.hosts.host_name spells them.
    allowed_backend_hosts: frozenset[str] = frozenset()


@dataclass
class Trade:
    detail: dict[str, Any]
    notify_url: str
    notifications: list[dict[str, Any]] = field(default_factory=list)

    @property
    def status(self) -> int:
        status: int = self.detail["transactionStatus"]
        return status


@dataclass(frozen=True)
class Profile:
    """A user made on the simulator page: what user/info tells about them."""

    name: str
    phone: str
    country: str


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
        on_change: Callable[[str], None] | None = None,
    ) -> None:
        self.secrets = dict(secrets_by_appid)
        # appid -> (the secret before the last rotation, until when it is still accepted)
        self._previous: dict[str, tuple[str, int]] = {}
        self.settings = settings
        self.clock = clock
        self.on_final = on_final or (lambda trade: None)
        self.on_change = on_change or (lambda kind: None)
        self._token_key = secrets.token_bytes(64)
        self.reset()

    def rotate(self, appid: str, secret: str, keep_previous_s: float) -> None:
        """A new secret for the app, as a platform console gives one: the old one is still
        accepted for keep_previous_s, so requests already signed with it do not fail."""
        if appid not in self.secrets:
            raise Rejected(404, f"unknown appid {appid[:64]!r}")
        if not secret:
            raise Rejected(400, "secret is required")
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

    def known_secrets(self) -> list[str]:
        """Every secret a request could carry: current ones, and those rotated out."""
        return [*self.secrets.values(), *(old for old, _ in self._previous.values())]

    def reset(self) -> None:
        self.calls: Counter[str] = Counter()
        self.requests = RequestLog()
        self._codes: dict[str, _Code] = {}
        self._users: dict[str, tuple[str, str]] = {}  # openId -> (appid, user)
        # Every user seen, in order: made on the page, or logged in by name or phone.
        self._user_keys: dict[str, None] = {}
        self._profiles: dict[str, Profile] = {}
        self._trades: dict[str, Trade] = {}
        self._out_trade_nos: set[tuple[str, str]] = set()
        self._notifications: dict[str, list[dict[str, Any]]] = {}
        self._activities: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.on_change("all")

    # Login and tokens

    def login(self, appid: str, user: str) -> dict[str, Any]:
        """What neu.login() / neu.getAuthCode() give the mini app: a one-time code."""
        if appid not in self.secrets:
            raise Rejected(404, f"unknown appid {appid[:64]!r}")
        user = user.strip()
        if not user:
            raise Rejected(400, "user is required: a phone number or a name")
        code = str(uuid.uuid4())
        self._codes[code] = _Code(
            appid, user, self.clock.now_ms() + self.settings.code_ttl_s * 1000
        )
        openid = open_id(appid, user)
        self._users[openid] = (appid, user)
        self._user_keys[user] = None
        self.on_change("users")
        return {"code": code, "expiresIn": self.settings.code_ttl_s, "openId": openid}

    def exchange(self, appid: str, params: Mapping[str, str]) -> dict[str, Any]:
        code = self._codes.get(params["code"])
        if code is None or code.appid != appid:
            raise Rejected(400, "invalid code: not issued to this app")
        if code.used:
            raise Rejected(400, "invalid code: it was already exchanged (a code is single-use)")
        if self.clock.now_ms() >= code.expires_ms:
            raise Rejected(400, "invalid code: it expired (codes live 5 minutes)")
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
            raise Rejected(
                401, "invalid accessToken: malformed or not issued by the platform"
            ) from None
        if self.clock.now_ms() // 1000 >= int(claims.get("exp", 0)):
            raise Rejected(401, "invalid accessToken: expired; the user must log in again")
        if claims.get("clientId") != appid:
            raise Rejected(401, "invalid accessToken: issued to another app")
        openid = str(claims.get("openId", ""))
        if openid not in self._users:
            raise Rejected(401, "invalid accessToken: its user is unknown (sandbox reset?)")
        _, user = self._users[openid]
        scopes = str(claims.get("scope", "")).split(",")
        profile = self.profile(user)
        return {
            "openId": openid,
            "nickName": profile.name,
            "avatar": f"https://sandbox.invalid/avatar/{openid}.png",
            "email": None,
            "country": profile.country,
            "phone": profile.phone if "user.phone" in scopes else None,
            "unionId": union_id(user),
        }

    # Users, as the simulator page makes and lists them

    def profile(self, user: str) -> Profile:
        """What user/info tells of a user: made on the page, or made up from the login name."""
        made = self._profiles.get(user)
        if made is not None:
            return made
        nick = user if not _PHONE.fullmatch(user) else f"user{user[-4:]}"
        return Profile(nick, _phone_of(user), DEFAULT_COUNTRY)

    def create_user(self, name: str, phone: str = "", country: str = "") -> dict[str, Any]:
        """A user with this name, phone and calling code; logging in as `user` (the phone, or
        the name when there is none) is then this user. The same phone again updates it."""
        name, phone, country = name.strip(), phone.strip(), country.strip() or DEFAULT_COUNTRY
        problems = []
        if not name or len(name) > MAX_NAME_CHARS:
            problems.append(f"name is required, at most {MAX_NAME_CHARS} characters")
        if phone and not _PHONE.fullmatch(phone):
            problems.append("phone must be 6 to 15 digits, optionally after a +")
        if not _COUNTRY.fullmatch(country):
            problems.append("country must be a calling code such as +86 or +966")
        if problems:
            raise Rejected(400, "; ".join(problems))
        user = phone.lstrip("+") or name
        country = "+" + country.lstrip("+")
        self._profiles[user] = Profile(name, phone.lstrip("+") or _phone_of(user), country)
        self._user_keys[user] = None
        self.on_change("users")
        return self.user_view(user)

    def user_view(self, user: str) -> dict[str, Any]:
        profile = self.profile(user)
        openids = {appid: open_id(appid, user) for appid in self.secrets}
        return {
            "user": user,
            "name": profile.name,
            "phone": profile.phone,
            "country": profile.country,
            "unionId": union_id(user),
            "openIds": openids,
            "loggedIn": [appid for appid, openid in openids.items() if openid in self._users],
        }

    def users(self) -> list[dict[str, Any]]:
        """Every user, in the order first seen."""
        return [self.user_view(user) for user in self._user_keys]

    def _require_users(self, appid: str, openids: list[str]) -> None:
        strangers = [o for o in openids if self._users.get(o, ("",))[0] != appid]
        if strangers:
            raise Rejected(
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
            raise Rejected(400, f"outTradeNo {out_trade_no!r} is already used by this merchant")
        self._require_users(appid, [params["openId"]])
        time_expire = int(params["timeExpire"]) if params.get("timeExpire") else None
        if time_expire is not None and time_expire <= now:
            raise Rejected(400, "timeExpire is in the past (milliseconds since the epoch)")
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
        self.on_change("trades")
        return {"outTradeNo": out_trade_no, "tradeNo": trade_no}

    def trade(self, trade_no: str, appid: str | None = None) -> Trade:
        trade = self._trades.get(trade_no)
        if trade is None or (appid is not None and trade.detail["appId"] != appid):
            raise Rejected(404, f"trade {trade_no[:64]!r} not found")
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
                raise Rejected(400, f"failReasonType must be one of {known}")
            self._finish(trade, FAILED, reason)
        else:
            raise Rejected(400, "result must be succeeded or failed")
        return dict(trade.detail)

    def let_expire(self, trade_no: str) -> dict[str, Any]:
        """The payer never pays: the trade's time runs out now (status 4, as past timeExpire)."""
        trade = self.trade(trade_no)
        self._require_processing(trade, "expired")
        now = self.clock.now_ms()
        if trade.detail["timeExpire"] is None or trade.detail["timeExpire"] > now:
            trade.detail["timeExpire"] = now
        self._finish(trade, EXPIRED, 21)
        return dict(trade.detail)

    def trades(self, open_ids: Collection[str] | None = None) -> list[dict[str, Any]]:
        """The trades of these users (or all), newest first, each with its callback attempts."""
        chosen = [
            trade
            for trade in reversed(self._trades.values())
            if open_ids is None or trade.detail["openId"] in open_ids
        ]
        for trade in chosen:
            self.expire_if_due(trade)
        return [trade_view(trade) for trade in chosen]

    def expire_if_due(self, trade: Trade) -> None:
        deadline = trade.detail["timeExpire"]
        if trade.status == PROCESSING and deadline is not None and self.clock.now_ms() >= deadline:
            self._finish(trade, EXPIRED, 21)

    def _require_processing(self, trade: Trade, what: str) -> None:
        if trade.status != PROCESSING:
            raise Rejected(
                409,
                f"trade is {STATUS_NAMES[trade.status]}; only a processing trade can be {what}",
            )

    def _finish(self, trade: Trade, status: int, fail_reason: int) -> None:
        trade.detail.update(
            transactionStatus=status, failReasonType=fail_reason, mtime=self.clock.now_ms()
        )
        self.on_change("trades")
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
        self.on_change("phone")
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
        self.on_change("phone")
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

    def phone(self, user: str) -> dict[str, Any]:
        """The user's phone screen, across every app: notifications newest first (each with a
        `key` that stays the same), then live activity cards, newest first."""
        notifications: list[dict[str, Any]] = []
        activities: list[dict[str, Any]] = []
        for appid in self.secrets:
            openid = open_id(appid, user)
            for index, message in enumerate(self._notifications.get(openid, [])):
                notifications.append({**message, "key": f"{openid}:{index}"})
            for activity in self.inbox(openid)["activities"]:
                activities.append({**activity, "key": f"{appid}:{activity['activityId']}"})
        return {
            "user": user,
            # Stable sorts of the reversed lists: of two in the same millisecond, the later first.
            "notifications": sorted(reversed(notifications), key=lambda n: -n["ctime"]),
            "activities": sorted(reversed(activities), key=lambda a: -a["ctime"]),
        }

    # The request log

    def record_call(
        self,
        method: str,
        endpoint: str,
        params: Mapping[str, str],
        status: int,
        msg: str,
        verdict: str | None = None,
    ) -> None:
        """One OpenAPI call received, with the platform's verdict, for the simulator page."""
        self.requests.record(
            at=self.clock.now_ms(),
            method=method,
            endpoint=endpoint,
            params=params,
            status=status,
            msg=msg,
            secrets=self.known_secrets(),
            verdict=verdict,
        )
        self.on_change("requests")


def trade_view(trade: Trade) -> dict[str, Any]:
    """A trade as the sandbox's controls show it: the detail, notifyUrl and callback attempts."""
    return {
        "detail": trade.detail,
        "notifyUrl": trade.notify_url,
        "notifications": trade.notifications,
    }
