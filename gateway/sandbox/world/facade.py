"""The platform's state behind one door: the server, its controls, the simulator page and
the notifier call World, which hands each call to the aggregate that owns it (apps, users,
logins, trades, messages) and keeps what spans them: the calls received and their log.

Synchronous and free of I/O. Every trade that reaches a final status is told to `on_final`,
where payment notifications start; every change a simulator page would show, to `on_change`
(a kind from events.KINDS).
"""

from __future__ import annotations

import secrets
from collections import Counter
from collections.abc import Callable, Collection, Mapping
from typing import Any

from gateway.core.clock import Clock
from gateway.sandbox.requestlog import RequestLog
from gateway.sandbox.world.apps import Apps
from gateway.sandbox.world.logins import Logins
from gateway.sandbox.world.messages import Messages
from gateway.sandbox.world.settings import Settings
from gateway.sandbox.world.trades import Trade, Trades
from gateway.sandbox.world.users import DEMO_USER, Profile, Users


class World:
    def __init__(
        self,
        secrets_by_appid: Mapping[str, str],
        settings: Settings,
        clock: Clock,
        on_final: Callable[[Trade], None] | None = None,
        on_change: Callable[[str], None] | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.on_final = on_final or (lambda trade: None)
        self.on_change = on_change or (lambda kind: None)
        self._apps = Apps(secrets_by_appid, clock)
        # Kept across resets: a token issued before one is still the platform's, its user gone.
        self._token_key = secrets.token_bytes(64)
        self.reset()

    def reset(self) -> None:
        """Forgets users, codes, trades, messages and calls; the apps and secrets stay, and the
        world is as fresh as at the start: the demo user alone, logged in nowhere."""
        self.calls: Counter[str] = Counter()
        self.requests = RequestLog()
        self._users = Users(self._apps, self._changed, premade=[DEMO_USER])
        self._logins = Logins(self._apps, self._users, self.settings, self.clock, self._token_key)
        self._trades = Trades(self._users, self.clock, self._finished, self._changed)
        self._messages = Messages(self._apps, self._users, self.clock, self._changed)
        self.on_change("all")

    # The aggregates call these, so on_change and on_final may be replaced on a running World.
    def _changed(self, kind: str) -> None:
        self.on_change(kind)

    def _finished(self, trade: Trade) -> None:
        self.on_final(trade)

    # Apps and their secrets

    @property
    def secrets(self) -> Mapping[str, str]:
        """appid -> the app's current secret."""
        return self._apps.secrets

    def rotate(self, appid: str, secret: str, keep_previous_s: float) -> None:
        self._apps.rotate(appid, secret, keep_previous_s)

    def previous_secret(self, appid: str) -> str | None:
        return self._apps.previous_secret(appid)

    def known_secrets(self) -> list[str]:
        return self._apps.known_secrets()

    # Login and tokens

    def login(self, appid: str, user: str) -> dict[str, Any]:
        return self._logins.login(appid, user)

    def exchange(self, appid: str, params: Mapping[str, str]) -> dict[str, Any]:
        return self._logins.exchange(appid, params)

    def user_info(self, appid: str, access_token: str) -> dict[str, Any]:
        return self._logins.user_info(appid, access_token)

    # Users, as the simulator page makes and lists them

    def profile(self, user: str) -> Profile:
        return self._users.profile(user)

    def create_user(self, name: str, phone: str = "", country: str = "") -> dict[str, Any]:
        return self._users.create_user(name, phone, country)

    def user_view(self, user: str) -> dict[str, Any]:
        return self._users.user_view(user)

    def users(self) -> list[dict[str, Any]]:
        return self._users.users()

    # Trades

    def create_trade(self, appid: str, params: Mapping[str, str]) -> dict[str, Any]:
        return self._trades.create_trade(appid, params)

    def trade(self, trade_no: str, appid: str | None = None) -> Trade:
        return self._trades.trade(trade_no, appid)

    def trade_detail(self, appid: str, trade_no: str) -> dict[str, Any]:
        return self._trades.trade_detail(appid, trade_no)

    def close_trade(self, appid: str, trade_no: str) -> bool:
        return self._trades.close_trade(appid, trade_no)

    def pay(self, trade_no: str, result: str, fail_reason: int | None = None) -> dict[str, Any]:
        return self._trades.pay(trade_no, result, fail_reason)

    def let_expire(self, trade_no: str) -> dict[str, Any]:
        return self._trades.let_expire(trade_no)

    def trades(self, open_ids: Collection[str] | None = None) -> list[dict[str, Any]]:
        return self._trades.trades(open_ids)

    def expire_if_due(self, trade: Trade) -> None:
        self._trades.expire_if_due(trade)

    # Messages

    def send_notify(self, appid: str, params: Mapping[str, str]) -> bool:
        return self._messages.send_notify(appid, params)

    def send_activity(self, appid: str, params: Mapping[str, str]) -> bool:
        return self._messages.send_activity(appid, params)

    def inbox(self, openid: str) -> dict[str, Any]:
        return self._messages.inbox(openid)

    def phone(self, user: str) -> dict[str, Any]:
        return self._messages.phone(user)

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
