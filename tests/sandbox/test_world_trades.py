"""Payment trades: made, paid, failed, closed or expired; each final status told once."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from gateway.core.verification import Rejected
from gateway.sandbox.world.apps import Apps
from gateway.sandbox.world.ids import digest
from gateway.sandbox.world.trades import FAIL_REASONS, Trade, Trades, trade_view
from gateway.sandbox.world.users import Users
from tests.support.clock import MutableClock

APPID, OTHER_APPID = "app", "other-app"
NOTIFY_URL = "https://shop.example/notify"
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


@dataclass
class Platform:
    clock: MutableClock
    users: Users
    trades: Trades
    finals: list[Trade] = field(default_factory=list)
    changes: list[str] = field(default_factory=list)

    def new_trade(self, out_trade_no: str = "order-1", user: str = "payer", **extra: str) -> str:
        params = {
            "outTradeNo": out_trade_no,
            "amount": "100",
            "currency": "USD",
            "openId": self.users.log_in(APPID, user),
            "notifyUrl": NOTIFY_URL,
            **extra,
        }
        trade_no: str = self.trades.create_trade(APPID, params)["tradeNo"]
        return trade_no


@pytest.fixture
def platform() -> Platform:
    clock = MutableClock()
    users = Users(Apps({APPID: "s", OTHER_APPID: "t"}, clock), lambda kind: None)
    finals: list[Trade] = []
    changes: list[str] = []
    return Platform(
        clock, users, Trades(users, clock, finals.append, changes.append), finals, changes
    )


def refusal(call: Callable[..., object], *args: object) -> tuple[int, str]:
    with pytest.raises(Rejected) as refused:
        call(*args)
    return refused.value.status, refused.value.msg


def test_a_new_trade_has_every_field_of_the_doc(platform: Platform) -> None:
    trade_no = platform.new_trade(amount="1999", description="tea")
    detail = platform.trades.trade_detail(APPID, trade_no)
    assert set(detail) == DOC_DETAIL_FIELDS
    now = platform.clock.now_ms()
    assert detail["merchantId"] == f"m{digest('merchant', APPID)[:20]}"
    assert (detail["amount"], detail["amountStrWithYuan"], detail["description"]) == (
        1999,
        "19.99",
        "tea",
    )
    assert (detail["transactionStatus"], detail["failReasonType"], detail["timeExpire"]) == (
        1,
        -1,
        None,
    )
    assert (detail["ctime"], detail["mtime"]) == (now, now)
    assert platform.changes == ["trades"]
    assert platform.finals == []


@pytest.mark.parametrize(("amount", "shown"), [("5", "0.05"), ("100", "1.00"), ("12345", "123.45")])
def test_the_amount_in_yuan_has_two_decimals(platform: Platform, amount: str, shown: str) -> None:
    trade_no = platform.new_trade(amount=amount)
    assert platform.trades.trade_detail(APPID, trade_no)["amountStrWithYuan"] == shown


def test_an_out_trade_no_is_unique_per_merchant(platform: Platform) -> None:
    platform.new_trade("dup")
    assert refusal(platform.new_trade, "dup") == (
        400,
        "outTradeNo 'dup' is already used by this merchant",
    )
    platform.new_trade("dup", merchantId="m2")


def test_a_trade_for_a_user_of_no_app_is_refused(platform: Platform) -> None:
    params = {
        "outTradeNo": "o",
        "amount": "1",
        "currency": "USD",
        "openId": "stranger",
        "notifyUrl": NOTIFY_URL,
    }
    status, msg = refusal(platform.trades.create_trade, APPID, params)
    assert (status, msg.split(" (")[0]) == (400, "openIds not of this app's users: stranger")


def test_time_expire_must_be_ahead(platform: Platform) -> None:
    now = platform.clock.now_ms()
    assert refusal(functools.partial(platform.new_trade, "o-1", timeExpire=str(now))) == (
        400,
        "timeExpire is in the past (milliseconds since the epoch)",
    )
    platform.new_trade("o-2", timeExpire=str(now + 1))


def test_a_trade_of_another_app_is_not_found(platform: Platform) -> None:
    trade_no = platform.new_trade()
    assert refusal(platform.trades.trade_detail, OTHER_APPID, trade_no) == (
        404,
        f"trade {trade_no!r} not found",
    )
    assert refusal(platform.trades.trade, "x" * 80) == (404, f"trade {'x' * 64!r} not found")


def test_a_payment_succeeds_once(platform: Platform) -> None:
    trade_no = platform.new_trade()
    platform.clock.advance(1)
    detail = platform.trades.pay(trade_no, "succeeded")
    assert (detail["transactionStatus"], detail["failReasonType"]) == (2, -1)
    assert (detail["payType"], detail["payMethod"]) == (1, 3)
    assert detail["payNo"]
    assert detail["mtime"] == platform.clock.now_ms()
    assert [trade.detail["tradeNo"] for trade in platform.finals] == [trade_no]
    assert refusal(platform.trades.pay, trade_no, "succeeded") == (
        409,
        "trade is succeeded; only a processing trade can be paid",
    )
    assert len(platform.finals) == 1


@pytest.mark.parametrize(("reason", "expected"), [(None, 27), (10, 10), (1, 1)])
def test_a_payment_fails_with_a_reason_of_the_docs_table(
    platform: Platform, reason: int | None, expected: int
) -> None:
    detail = platform.trades.pay(platform.new_trade(), "failed", reason)
    assert (detail["transactionStatus"], detail["failReasonType"]) == (3, expected)
    assert detail["payNo"] is None


@pytest.mark.parametrize(
    ("result", "reason", "msg"),
    [
        pytest.param("maybe", None, "result must be succeeded or failed", id="unknown result"),
        pytest.param(
            "failed",
            99,
            f"failReasonType must be one of {', '.join(map(str, FAIL_REASONS))}",
            id="reason not in the table",
        ),
    ],
)
def test_a_payment_refused(platform: Platform, result: str, reason: int | None, msg: str) -> None:
    trade_no = platform.new_trade()
    assert refusal(platform.trades.pay, trade_no, result, reason) == (400, msg)
    assert platform.trades.trade(trade_no).status == 1
    assert refusal(platform.trades.pay, "nope", "succeeded")[0] == 404


def test_closing_a_processing_trade(platform: Platform) -> None:
    trade_no = platform.new_trade()
    assert platform.trades.close_trade(APPID, trade_no) is True
    trade = platform.trades.trade(trade_no)
    assert (trade.status, trade.detail["failReasonType"]) == (6, 22)
    assert platform.finals == [trade]
    assert refusal(platform.trades.close_trade, APPID, trade_no) == (
        409,
        "trade is closed; only a processing trade can be closed",
    )
    assert refusal(platform.trades.close_trade, OTHER_APPID, trade_no)[0] == 404


def test_a_trade_expires_at_its_time_expire(platform: Platform) -> None:
    deadline = platform.clock.now_ms() + 60_000
    trade_no = platform.new_trade(timeExpire=str(deadline))
    platform.clock.advance(59.999)
    assert platform.trades.trade(trade_no).status == 1
    platform.clock.advance(0.001)
    detail = platform.trades.trade_detail(APPID, trade_no)
    assert (detail["transactionStatus"], detail["failReasonType"]) == (4, 21)
    assert len(platform.finals) == 1
    platform.trades.trade(trade_no)
    assert len(platform.finals) == 1, "told once"


def test_let_expire_ends_the_trade_as_its_time_running_out_would(platform: Platform) -> None:
    now = platform.clock.now_ms()
    later = platform.new_trade("o-1", timeExpire=str(now + 60_000))
    unbounded = platform.new_trade("o-2")
    for trade_no in (later, unbounded):
        detail = platform.trades.let_expire(trade_no)
        assert (detail["transactionStatus"], detail["failReasonType"]) == (4, 21)
        assert detail["timeExpire"] == now
    assert refusal(platform.trades.let_expire, later) == (
        409,
        "trade is expired; only a processing trade can be expired",
    )


def test_trades_are_listed_newest_first_by_user_with_their_callbacks(platform: Platform) -> None:
    first = platform.new_trade("o-1", "alice")
    second = platform.new_trade("o-2", "bob")
    third = platform.new_trade("o-3", "alice", timeExpire=str(platform.clock.now_ms() + 1000))
    alice = platform.users.log_in(APPID, "alice")
    listed = platform.trades.trades([alice])
    assert [view["detail"]["tradeNo"] for view in listed] == [third, first]
    assert listed[1] == {
        "detail": platform.trades.trade_detail(APPID, first),
        "notifyUrl": NOTIFY_URL,
        "notifications": [],
    }
    assert [view["detail"]["tradeNo"] for view in platform.trades.trades()] == [
        third,
        second,
        first,
    ]
    platform.clock.advance(1)
    assert platform.trades.trades([alice])[0]["detail"]["transactionStatus"] == 4


def test_a_trade_view_shares_the_trades_own_records(platform: Platform) -> None:
    trade = platform.trades.trade(platform.new_trade())
    trade.notifications.append({"attempt": 1})
    assert trade_view(trade)["notifications"] == [{"attempt": 1}]
