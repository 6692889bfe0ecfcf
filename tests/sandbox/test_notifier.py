"""The platform's payment notifications: signed, POSTed to the trade's notifyUrl, retried
with backoff until a 2xx or the last attempt."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from gateway.sandbox.notifier import Notifier, notification_fields
from gateway.sandbox.world import Settings, Trade
from tests.support.clock import MutableClock
from tests.support.platform_double import APPID, SECRET, reference_sign
from tests.support.ports import free_port
from tests.support.receiver import CallbackReceiver

SETTINGS = Settings(notify_attempts=3, notify_backoff_s=0.01)


def paid_trade(notify_url: str, status: int = 2) -> Trade:
    detail: dict[str, Any] = {
        "tradeNo": "T1",
        "outTradeNo": "order-1",
        "transactionStatus": status,
        "amount": 100,
        "currency": "USD",
        "appId": APPID,
    }
    return Trade(detail, notify_url)


@pytest.fixture
def clock() -> MutableClock:
    return MutableClock()


@pytest.fixture
async def notifier(clock: MutableClock) -> AsyncIterator[Notifier]:
    notifier = Notifier({APPID: SECRET}, SETTINGS, clock)
    yield notifier
    await notifier.close()


def test_the_fields_are_the_docs_signed_with_the_apps_secret() -> None:
    fields = notification_fields(paid_trade("http://x"), APPID, SECRET, 1_700_000_000_000)
    unsigned = {
        "tradeNo": "T1",
        "outTradeNo": "order-1",
        "transactionStatus": "2",
        "amount": "100",
        "currency": "USD",
        "appid": APPID,
        "timestamp": "1700000000000",
    }
    assert fields == {**unsigned, "sign": reference_sign(unsigned, SECRET)}


async def test_a_final_status_is_posted_once_when_answered_2xx(
    notifier: Notifier, receiver: CallbackReceiver, clock: MutableClock
) -> None:
    trade = paid_trade(receiver.url)
    notifier.notify(trade)
    await notifier.idle()
    [received] = receiver.received
    assert received["sign"] == reference_sign(received, SECRET)
    assert receiver.headers[0]["Content-Type"] == "application/x-www-form-urlencoded"
    assert trade.notifications == [
        {"attempt": 1, "transactionStatus": 2, "at": clock.now_ms(), "httpStatus": 200}
    ]
    assert trade.detail["notifySuccess"] is True


async def test_a_failed_attempt_is_tried_again_after_a_growing_backoff(
    notifier: Notifier, receiver: CallbackReceiver
) -> None:
    receiver.fail_first = 2
    trade = paid_trade(receiver.url)
    notifier.notify(trade)
    await notifier.idle()
    assert [n["httpStatus"] for n in trade.notifications] == [500, 500, 200]
    assert [n["nextAttemptAt"] - n["at"] for n in trade.notifications[:2]] == [10, 20]
    assert trade.detail["notifySuccess"] is True


async def test_it_gives_up_after_the_last_attempt(
    notifier: Notifier, receiver: CallbackReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.fail_first = 10
    trade = paid_trade(receiver.url, status=3)
    notifier.notify(trade)
    await notifier.idle()
    assert len(receiver.received) == 3
    assert [n.get("gaveUp", False) for n in trade.notifications] == [False, False, True]
    assert "nextAttemptAt" not in trade.notifications[-1]
    assert trade.detail["notifySuccess"] is False
    assert f"gave up notifying {receiver.url} of trade T1 after 3 attempts" in caplog.text


async def test_an_address_nobody_answers_at_is_an_error_per_attempt(notifier: Notifier) -> None:
    trade = paid_trade(f"http://127.0.0.1:{free_port()}/gone")
    notifier.notify(trade)
    await notifier.idle()
    assert [n["error"] for n in trade.notifications] == ["ClientConnectorError"] * 3


async def test_a_rotated_secret_signs_the_next_notification(
    notifier: Notifier, receiver: CallbackReceiver
) -> None:
    notifier.set_secret(APPID, "rotated")
    notifier.notify(paid_trade(receiver.url))
    await notifier.idle()
    [received] = receiver.received
    assert received["sign"] == reference_sign(received, "rotated")


async def test_close_ends_the_deliveries_in_flight(
    clock: MutableClock, receiver: CallbackReceiver
) -> None:
    notifier = Notifier({APPID: SECRET}, Settings(notify_attempts=5, notify_backoff_s=600), clock)
    receiver.fail_first = 1
    trade = paid_trade(receiver.url)
    notifier.notify(trade)
    await clock.until_sleeping()
    started = time.monotonic()
    await notifier.close()
    assert time.monotonic() - started < 1
    assert len(trade.notifications) == 1
    assert len(receiver.received) == 1
