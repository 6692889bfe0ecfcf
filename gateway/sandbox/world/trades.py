"""Payment trades: made by the mini app's backend, paid, failed, closed or expired, each
final status told through `on_final` (where the platform's payment callback starts)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway.core.clock import Clock
from gateway.core.verification import Rejected
from gateway.sandbox.world.ids import digest
from gateway.sandbox.world.users import Users

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
# The doc's reasons for the ends the payer does not choose.
EXPIRED_REASON, CLOSED_REASON, FAILED_REASON = 21, 22, 27


@dataclass
class Trade:
    detail: dict[str, Any]
    notify_url: str
    notifications: list[dict[str, Any]] = field(default_factory=list)

    @property
    def status(self) -> int:
        status: int = self.detail["transactionStatus"]
        return status


def trade_view(trade: Trade) -> dict[str, Any]:
    """A trade as the sandbox's controls show it: the detail, notifyUrl and callback attempts."""
    return {
        "detail": trade.detail,
        "notifyUrl": trade.notify_url,
        "notifications": trade.notifications,
    }


class Trades:
    def __init__(
        self,
        users: Users,
        clock: Clock,
        on_final: Callable[[Trade], None],
        on_change: Callable[[str], None],
    ) -> None:
        self._users = users
        self._clock = clock
        self._on_final = on_final
        self._on_change = on_change
        self._trades: dict[str, Trade] = {}
        self._out_trade_nos: set[tuple[str, str]] = set()

    def create_trade(self, appid: str, params: Mapping[str, str]) -> dict[str, Any]:
        """pay/transactions/trade: a processing trade of one of the app's users."""
        now = self._clock.now_ms()
        merchant = params.get("merchantId") or f"m{digest('merchant', appid)[:20]}"
        out_trade_no = params["outTradeNo"]
        if (merchant, out_trade_no) in self._out_trade_nos:
            raise Rejected(400, f"outTradeNo {out_trade_no!r} is already used by this merchant")
        self._users.require(appid, [params["openId"]])
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
            "payer": int(digest("payer", params["openId"])[:13], 16),
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
        self._on_change("trades")
        return {"outTradeNo": out_trade_no, "tradeNo": trade_no}

    def trade(self, trade_no: str, appid: str | None = None) -> Trade:
        """The trade (of this app, when one is named), expired first if its time is up."""
        trade = self._trades.get(trade_no)
        if trade is None or (appid is not None and trade.detail["appId"] != appid):
            raise Rejected(404, f"trade {trade_no[:64]!r} not found")
        self.expire_if_due(trade)
        return trade

    def trade_detail(self, appid: str, trade_no: str) -> dict[str, Any]:
        """pay/transactions/tradedetail."""
        return dict(self.trade(trade_no, appid).detail)

    def close_trade(self, appid: str, trade_no: str) -> bool:
        """pay/transactions/tradeclose."""
        trade = self.trade(trade_no, appid)
        self._require_processing(trade, "closed")
        self._finish(trade, CLOSED, CLOSED_REASON)
        return True

    def pay(self, trade_no: str, result: str, fail_reason: int | None = None) -> dict[str, Any]:
        """What the payer's neu.requestPayment() leads to."""
        trade = self.trade(trade_no)
        self._require_processing(trade, "paid")
        if result == "succeeded":
            trade.detail.update(payType=1, payMethod=3, payNo=uuid.uuid4().hex)
            self._finish(trade, SUCCEEDED, NO_FAIL_REASON)
        elif result == "failed":
            reason = FAILED_REASON if fail_reason is None else fail_reason
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
        now = self._clock.now_ms()
        if trade.detail["timeExpire"] is None or trade.detail["timeExpire"] > now:
            trade.detail["timeExpire"] = now
        self._finish(trade, EXPIRED, EXPIRED_REASON)
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
        if trade.status == PROCESSING and deadline is not None and self._clock.now_ms() >= deadline:
            self._finish(trade, EXPIRED, EXPIRED_REASON)

    def _require_processing(self, trade: Trade, what: str) -> None:
        if trade.status != PROCESSING:
            raise Rejected(
                409,
                f"trade is {STATUS_NAMES[trade.status]}; only a processing trade can be {what}",
            )

    def _finish(self, trade: Trade, status: int, fail_reason: int) -> None:
        trade.detail.update(
            transactionStatus=status, failReasonType=fail_reason, mtime=self._clock.now_ms()
        )
        self._on_change("trades")
        self._on_final(trade)
